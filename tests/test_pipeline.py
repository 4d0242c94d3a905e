"""The whole engine on real GeoTIFFs: known change in, right polygons and rasters out; cancel cleans up."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from shapely import from_wkb

from backend.errors import CanceledError, InputError, OutputError
from backend.inference.model_source import LoadedModel
from backend.inference.pipeline import OUTPUT_NAMES, detect
from backend.params import DetectParams
from tests.rasters import UTM_AREAL, UTM_X0, UTM_Y0, utm_transform, write_raster


class Difference(torch.nn.Module):
    """Change logit = 20 * (after - before) - 2 on the first band: a bright new object is change."""

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        return 20.0 * (image_b[:, :1] - image_a[:, :1]) - 2.0


def difference_model(tile: int = 64, overlap: int = 16) -> LoadedModel:
    card = SimpleNamespace(mean=[0.0] * 3, std=[1.0] * 3, tile_size=tile, overlap=overlap, threshold=0.5, tta="none")
    return LoadedModel(Difference(), card, "difference test model")  # type: ignore[arg-type]


def square_pair(tmp_path: Path, *, nodata_cols: int = 0) -> tuple[Path, Path]:
    """200 x 150 px at 10 m; the after image gains a 40 x 30 px bright square at rows 50-79, cols 60-99."""
    before = np.full((3, 150, 200), 50, dtype=np.uint8)
    after = before.copy()
    after[:, 50:80, 60:100] = 250
    if nodata_cols:
        before[:, :, :nodata_cols] = 0
        after[:, 100:140, :nodata_cols] = 250  # "change" inside the before raster's nodata
    kwargs = {"nodata": 0} if nodata_cols else {}
    return (
        write_raster(tmp_path / "before.tif", before, transform=utm_transform(), **kwargs),
        write_raster(tmp_path / "after.tif", after, transform=utm_transform()),
    )


def test_a_new_square_becomes_one_polygon_at_the_right_place(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    result = detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_NAMES)
    assert result.polygons == 1
    assert result.changed_area_m2 == pytest.approx(40 * 30 * 100.0 / UTM_AREAL, rel=1e-6)  # on the ellipsoid
    _, _, geometry, fields = pyogrio.raw.read(out / "changes.gpkg")
    polygon = from_wkb(geometry[0])
    assert polygon.bounds == pytest.approx((UTM_X0 + 600, UTM_Y0 - 800, UTM_X0 + 1000, UTM_Y0 - 500))
    assert fields[1][0] == pytest.approx(120_000.0 / UTM_AREAL, rel=1e-6)  # area_m2
    with rasterio.open(out / "mask.tif") as src:
        mask = src.read(1)
        assert src.crs.to_epsg() == 32631 and src.transform == utm_transform()
    expected = np.zeros((150, 200), dtype=np.uint8)
    expected[50:80, 60:100] = 1
    np.testing.assert_array_equal(mask, expected)
    with rasterio.open(out / "probability.tif") as src:
        probability = src.read(1)
    assert probability[60, 70] == round(255 / (1 + np.exp(-(20 * 200 / 255 - 2))))
    assert probability[10, 10] == round(255 / (1 + np.exp(2.0)))


def test_nodata_is_never_change(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path, nodata_cols=30)
    out = tmp_path / "out"
    result = detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    assert result.polygons == 1  # only the real square, not the bright patch inside the nodata columns
    with rasterio.open(out / "mask.tif") as src:
        mask = src.read(1)
    assert (mask[:, :30] == 255).all() and (mask[:, 30:] != 255).all()


def test_user_prompts_reach_the_model(tmp_path: Path) -> None:
    seen: list[object] = []

    class Recording(Difference):
        def forward(self, image_a, image_b, prompts=None):  # type: ignore[no-untyped-def]
            seen.append(prompts)
            return super().forward(image_a, image_b)

    before, after = square_pair(tmp_path)
    loaded = difference_model()
    loaded.model = Recording()
    params = DetectParams(before=before, after=after, out_dir=tmp_path / "out", prompts=("building", "road"))
    detect(params, loaded=loaded)
    assert seen and all(p == ["building", "road"] for p in seen)


def test_cancel_leaves_no_files(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    calls = iter(range(1000))
    with pytest.raises(CanceledError):
        detect(
            DetectParams(before=before, after=after, out_dir=out, batch_size=1),
            loaded=difference_model(),
            is_canceled=lambda: next(calls) >= 3,
        )
    assert not out.exists()


def test_cancel_keeps_a_previous_runs_outputs_untouched(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(CanceledError):
        detect(
            DetectParams(before=before, after=after, out_dir=out), loaded=difference_model(), is_canceled=lambda: True
        )
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_progress_runs_from_zero_to_one(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    fractions: list[float] = []
    detect(
        DetectParams(before=before, after=after, out_dir=tmp_path / "out"),
        loaded=difference_model(),
        progress=lambda f, m: fractions.append(f),
    )
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(fractions))


class Position(torch.nn.Module):
    """Change logit = a linear function of the pixel's position, read from the before image's bands."""

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        col, row = image_a[:, :1] * 255.0, image_a[:, 1:2] * 255.0
        return 0.05 * (col - 100.0) + 0.03 * (row - 75.0)


def test_stitched_tiles_equal_the_function_of_position_without_seams(tmp_path: Path) -> None:
    rows, cols = np.mgrid[0:150, 0:200]
    image = np.stack([cols, rows, np.zeros_like(rows)]).astype(np.uint8)
    before = write_raster(tmp_path / "before.tif", image, transform=utm_transform())
    after = write_raster(tmp_path / "after.tif", image, transform=utm_transform())
    loaded = difference_model(tile=64, overlap=16)
    loaded.model = Position()
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out, tile=64, overlap=16), loaded=loaded)
    with rasterio.open(out / "probability.tif") as src:
        probability = src.read(1).astype(np.float64)
    expected = 255.0 / (1.0 + np.exp(-(0.05 * (cols - 100.0) + 0.03 * (rows - 75.0))))
    assert np.abs(probability - expected).max() <= 0.5 + 1e-6  # uint8 rounding only: no seams, no shifts


def test_float16_probability(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path, nodata_cols=30)
    out = tmp_path / "out"
    params = DetectParams(before=before, after=after, out_dir=out, probability_dtype="float16")
    detect(params, loaded=difference_model())
    with rasterio.open(out / "probability.tif") as src:
        # GDAL 3.6 has no Float16 type: half floats are a Float32 band stored with NBITS=16.
        assert src.dtypes[0] == "float32" and src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "16"
        probability = src.read(1)
    assert probability[60, 70] == pytest.approx(1 / (1 + np.exp(-(20 * 200 / 255 - 2))), abs=1e-3)
    assert np.isnan(probability[:, :30]).all()


def test_geographic_rasters_give_geodesic_areas(tmp_path: Path) -> None:
    """A before raster in EPSG:4326: polygons stay in degrees, areas come out in m² on the ellipsoid."""
    from pyproj import Geod
    from rasterio.transform import from_origin

    transform = from_origin(5.0, 50.0, 0.0001, 0.0001)  # ~7 x 11 m pixels at 50°N
    before = np.full((3, 150, 200), 50, dtype=np.uint8)
    after = before.copy()
    after[:, 50:80, 60:100] = 250
    a = write_raster(tmp_path / "before.tif", before, crs="EPSG:4326", transform=transform)
    b = write_raster(tmp_path / "after.tif", after, crs="EPSG:4326", transform=transform)
    out = tmp_path / "out"
    result = detect(DetectParams(before=a, after=b, out_dir=out), loaded=difference_model())
    lon0, lat0 = 5.0 + 60 * 0.0001, 50.0 - 50 * 0.0001
    lons = [lon0, lon0 + 0.004, lon0 + 0.004, lon0, lon0]
    lats = [lat0, lat0, lat0 - 0.003, lat0 - 0.003, lat0]
    truth = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0])
    assert result.polygons == 1
    assert result.changed_area_m2 == pytest.approx(truth, rel=1e-4)
    _, _, geometry, _ = pyogrio.raw.read(out / "changes.gpkg")
    assert from_wkb(geometry[0]).bounds == pytest.approx((lon0, lat0 - 0.003, lon0 + 0.004, lat0))


def test_an_after_raster_in_web_mercator_lands_on_the_before_grid(tmp_path: Path) -> None:
    """After raster in EPSG:3857, another resolution and origin: the new square's polygon lands where it is."""
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp_points
    from rasterio.warp import transform_bounds

    before = write_raster(tmp_path / "before.tif", np.full((3, 150, 200), 50, np.uint8), transform=utm_transform())
    west, south, east, north = transform_bounds("EPSG:32631", "EPSG:3857", UTM_X0, UTM_Y0 - 1500, UTM_X0 + 2000, UTM_Y0)
    res = 7.0
    width, height = int((east - west) / res) + 1, int((north - south) / res) + 1
    transform = from_origin(west - 3.3, north + 2.1, res, res)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = transform * (cols, rows)
    ux, uy = (np.asarray(v).reshape(xs.shape) for v in warp_points("EPSG:3857", "EPSG:32631", xs.ravel(), ys.ravel()))
    inside = (ux >= UTM_X0 + 600) & (ux < UTM_X0 + 1000) & (uy <= UTM_Y0 - 500) & (uy > UTM_Y0 - 800)
    after_data = np.where(inside, 250, 50).astype(np.uint8)
    after = write_raster(tmp_path / "after.tif", np.stack([after_data] * 3), crs="EPSG:3857", transform=transform)
    out = tmp_path / "out"
    result = detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    assert result.polygons == 1
    _, _, geometry, _ = pyogrio.raw.read(out / "changes.gpkg")
    xmin, ymin, xmax, ymax = from_wkb(geometry[0]).bounds
    expected = (UTM_X0 + 600, UTM_Y0 - 800, UTM_X0 + 1000, UTM_Y0 - 500)
    assert (xmin, ymin, xmax, ymax) == pytest.approx(expected, abs=10.0)  # within one 10 m output pixel
    assert result.changed_area_m2 == pytest.approx(120_000.0, rel=0.05)


def test_uint16_multiband_with_explicit_bands(tmp_path: Path) -> None:
    """A 4-band uint16 scene in B, G, R, NIR order, with --bands 3,2,1, stretched per image."""
    rng = np.random.default_rng(5)
    before = rng.integers(800, 1200, size=(4, 150, 200), dtype=np.uint16)
    after = before.copy()
    after[2, 50:80, 60:100] = 4000  # red (band 3) brightens where something was built
    a = write_raster(tmp_path / "before.tif", before, transform=utm_transform())
    b = write_raster(tmp_path / "after.tif", after, transform=utm_transform())
    out = tmp_path / "out"
    result = detect(DetectParams(before=a, after=b, out_dir=out, bands=(3, 2, 1)), loaded=difference_model())
    assert result.polygons >= 1
    _, _, geometry, fields = pyogrio.raw.read(out / "changes.gpkg")
    biggest = int(np.argmax(fields[1]))
    assert from_wkb(geometry[biggest]).bounds == pytest.approx(
        (UTM_X0 + 600, UTM_Y0 - 800, UTM_X0 + 1000, UTM_Y0 - 500)
    )


def test_preview_shows_before_after_and_the_change_in_red(tmp_path: Path) -> None:
    from PIL import Image

    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    preview = np.asarray(Image.open(out / "preview.png").convert("RGB")).astype(int)
    assert preview.shape == (150, 3 * 200 + 2 * 8, 3)  # small grids are shown at full resolution
    overlay = preview[:, 2 * (200 + 8) :]
    red = (overlay[..., 0] > 150) & (overlay[..., 0] - overlay[..., 1] > 80) & (overlay[..., 0] - overlay[..., 2] > 80)
    expected = np.zeros((150, 200), dtype=bool)
    expected[50:80, 60:100] = True
    np.testing.assert_array_equal(red, expected)
    assert (preview[55, 200 + 8 + 70] > 200).all() and (preview[55, 70] < 100).all()  # the square is new


def test_a_rerun_without_preview_leaves_no_stale_preview(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    assert (out / "preview.png").exists()
    result = detect(
        DetectParams(before=before, after=after, out_dir=out, write_preview=False), loaded=difference_model()
    )
    assert "preview" not in result.outputs and not (out / "preview.png").exists()


@pytest.mark.parametrize(
    ("tile", "overlap", "expected"),
    [(None, None, (64, 16)), (32, None, (32, 8)), (128, None, (128, 16)), (64, 0, (64, 0))],
)
def test_tiling_comes_from_the_user_then_the_card(tile, overlap, expected) -> None:  # type: ignore[no-untyped-def]
    params = DetectParams(before=Path("a.tif"), after=Path("b.tif"), out_dir=Path("o"), tile=tile, overlap=overlap)
    assert params.resolve_tiling(64, 16) == expected


def test_an_overlap_of_half_the_tile_is_refused_naming_both_options() -> None:
    params = DetectParams(before=Path("a.tif"), after=Path("b.tif"), out_dir=Path("o"), tile=64, overlap=32)
    with pytest.raises(InputError, match=r"--overlap 32 must be less than half of --tile 64; try --overlap 16"):
        params.resolve_tiling(256, 64)


def test_a_folder_in_the_way_is_refused_before_anything_moves(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    (out / "mask.tif").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"mask\.tif is a folder"):
        detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    assert [p.name for p in out.iterdir()] == ["mask.tif"]


def test_a_failure_while_publishing_puts_the_previous_run_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    previous = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = Path.replace

    def flaky_replace(self: Path, target: Path) -> Path:  # the new mask cannot be moved in
        if self.name == "mask.tif" and ".clipcd-" in str(self) and "previous" not in str(self):
            raise PermissionError("the file is open in another program")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", flaky_replace)
    params = DetectParams(before=before, after=after, out_dir=out, threshold=0.9)
    with pytest.raises(OutputError, match="open in another program"):
        detect(params, loaded=difference_model())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == previous


def test_the_preview_overlay_sits_on_the_lattice_of_the_images(tmp_path: Path) -> None:
    """A grid larger than the preview is decimated; mask and images must use the same pixels."""
    from backend.outputs.preview import PreviewSampler

    rows, cols = np.mgrid[0:2000, 0:1700]
    sampler = PreviewSampler(None, 2000, 1700, max_side=768)  # step 3
    assert sampler.step == 3
    mask = ((cols % 3 == 0) & (rows % 3 == 0)).astype(np.uint8)  # only lattice pixels are change
    for start in range(0, 2000, 256):
        sampler.add_mask_rows(start, mask[start : start + 256])
    assert (sampler.samples()[3] == 1).all()


def test_the_preview_images_keep_the_lattice_pixels_of_every_tile() -> None:
    from backend.inference.tiling import tile_grid
    from backend.outputs.preview import PreviewSampler

    class Position:
        def read(self, window):  # type: ignore[no-untyped-def]
            r, c = np.mgrid[
                window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
            ]
            image = np.stack([r, c, r * 0]).astype(np.float32)
            return image, image, np.ones(r.shape, dtype=bool)

    sampler = PreviewSampler(Position(), 1000, 900, max_side=300)  # step 4
    for tile in tile_grid(1000, 900, 256, 64):
        sampler.read(tile.window)
    image_a, _, valid, _ = sampler.samples()
    r, c = np.mgrid[0:1000:4, 0:900:4]
    assert valid.all()
    np.testing.assert_array_equal(image_a[0], r)
    np.testing.assert_array_equal(image_a[1], c)


def test_a_model_of_other_bands_needs_explicit_bands(tmp_path: Path) -> None:
    before, after = square_pair(tmp_path)
    loaded = difference_model()
    loaded.card.bands = ["nir", "red", "green"]  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"nir, red, green.*--bands"):
        detect(DetectParams(before=before, after=after, out_dir=tmp_path / "out"), loaded=loaded)
    result = detect(DetectParams(before=before, after=after, out_dir=tmp_path / "out", bands=(1, 2, 3)), loaded=loaded)
    assert result.polygons == 1
