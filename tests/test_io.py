"""backend.raster.io: alignment, overlap, nodata, windows and input validation (bands and stretch: test_bands.py).

Every test writes real GeoTIFFs with rasterio (tests/rasters.py) into ``tmp_path``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform, transform_bounds
from rasterio.windows import Window

from backend.errors import InputError, RasterError, RasterMismatchError
from backend.raster.io import Grid, RasterPair
from tests.rasters import RGB, UTM31, UTM_X0, UTM_Y0, constant, ramp, rgb_pair, utm_transform, write_raster


def full(pair: RasterPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return pair.read(Window(0, 0, pair.grid.width, pair.grid.height))


def pixel_centres(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    xs, ys = grid.transform * (cols, rows)
    return np.asarray(xs), np.asarray(ys)


# --- alignment of an after raster in another CRS ---------------------------------------------

# Before: 120 x 120 px of 10 m in UTM 31N near 5.5°E (grid convergence about 2°, so a
# geographic box is visibly rotated on the UTM grid).
X0, Y0 = 680_000.0, 5_500_000.0
SQUARE = (680_500.0, 5_499_300.0, 680_600.0, 5_499_400.0)  # bright square, UTM metres
INNER = (680_200.0, 5_498_900.0, 681_000.0, 5_499_800.0)  # area the after raster is built around


def write_reprojected_after(path: Path, crs: str, res: float) -> tuple[Path, tuple[float, float, float, float]]:
    """An after raster in ``crs`` around INNER, dark (20) with SQUARE bright (250); returns path, footprint."""
    west, south, east, north = transform_bounds(UTM31, crs, *INNER)
    # Offset the origin by a third of a pixel so no grid line coincides with the before raster's.
    west, north = west - res / 3, north + res / 3
    width, height = math.ceil((east - west) / res), math.ceil((north - south) / res)
    tf = from_origin(west, north, res, res)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xs, ys = tf * (cols, rows)
    ux, uy = transform(crs, UTM31, np.ravel(xs).tolist(), np.ravel(ys).tolist())
    ux_arr, uy_arr = np.reshape(ux, cols.shape), np.reshape(uy, cols.shape)
    bright = (ux_arr >= SQUARE[0]) & (ux_arr <= SQUARE[2]) & (uy_arr >= SQUARE[1]) & (uy_arr <= SQUARE[3])
    data = np.where(bright, 250, 20).astype(np.uint8)
    write_raster(path, np.stack([data] * 3), crs=crs, transform=tf, colorinterp=RGB)
    return path, (west, north - height * res, west + width * res, north)


@pytest.mark.parametrize(("crs", "res"), [("EPSG:4326", 0.00005), ("EPSG:3857", 7.0)])
def test_after_in_other_crs_lands_on_the_right_pixels(tmp_path: Path, crs: str, res: float) -> None:
    before = write_raster(
        tmp_path / "before.tif", constant(50, (120, 120)), transform=from_origin(X0, Y0, 10, 10), colorinterp=RGB
    )
    after, box = write_reprojected_after(tmp_path / "after.tif", crs, res)
    with RasterPair(before, after) as pair:
        grid = pair.grid
        image_a, image_b, valid = full(pair)
        # The grid is the overlap, snapped to whole 10 m before-pixels.
        west, south, east, north = transform_bounds(crs, UTM31, *box, densify_pts=21)
        assert grid.crs == rasterio.crs.CRS.from_string(UTM31)
        assert grid.transform.a == 10 and grid.transform.e == -10
        gw, gs, ge, gn = grid.bounds
        assert gw <= west < gw + 10 and ge - 10 < east <= ge
        assert gs <= south < gs + 10 and gn - 10 < north <= gn
        assert (gw - X0) % 10 == 0 and (Y0 - gn) % 10 == 0

    xs, ys = pixel_centres(grid)
    # Distance (m) from each grid pixel centre to the square; negative inside.
    dx = np.maximum(SQUARE[0] - xs, xs - SQUARE[2])
    dy = np.maximum(SQUARE[1] - ys, ys - SQUARE[3])
    inside, outside = (dx < -10) & (dy < -10), (dx > 10) | (dy > 10)
    assert inside.sum() >= 49 and valid[inside].all()
    assert image_b[0][inside].min() > 0.9  # 250 / 255
    ok_out = outside & valid
    assert ok_out.sum() > 1000
    assert image_b[0][ok_out].max() < 0.2  # 20 / 255
    # The bright pixels' centroid is the square's centre, to within half a pixel.
    rows, cols = np.nonzero(image_b[0] > 0.5)
    col_c, row_c = ~grid.transform * ((SQUARE[0] + SQUARE[2]) / 2, (SQUARE[1] + SQUARE[3]) / 2)
    assert abs(cols.mean() + 0.5 - col_c) < 0.5 and abs(rows.mean() + 0.5 - row_c) < 0.5
    # The before image is untouched by the alignment.
    assert np.allclose(image_a[:, valid], 50 / 255)

    # Pixels of the (rotated) grid box that lie outside the after raster are invalid, inside valid.
    fx, fy = transform(UTM31, crs, xs.ravel().tolist(), ys.ravel().tolist())
    fx_arr, fy_arr = np.reshape(fx, xs.shape), np.reshape(fy, ys.shape)
    margin = 1.5 * res * (10 / 7.0 if crs == "EPSG:3857" else 10 / 4.0)
    out_x = np.maximum(box[0] - fx_arr, fx_arr - box[2])
    out_y = np.maximum(box[1] - fy_arr, fy_arr - box[3])
    far_out = (out_x > margin) | (out_y > margin)
    deep_in = (out_x < -margin) & (out_y < -margin)
    assert far_out.sum() > 0, "the test raster should leave corners of the grid outside the after raster"
    assert not valid[far_out].any()
    assert valid[deep_in].all()
    assert np.all(image_b[:, ~valid] == 0) and np.all(image_a[:, ~valid] == 0)


def test_same_crs_whole_pixel_offset_reads_directly(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", ramp((40, 50), dtype="uint8"), colorinterp=RGB)
    # after starts 10 columns right and 5 rows down of the before raster, same 10 m pixels.
    after_data = ramp((40, 50), dtype="uint16", start=7)
    after = write_raster(tmp_path / "a.tif", after_data, transform=utm_transform(10, 5))
    with RasterPair(before, after, stretch="none") as pair:
        assert pair.window == Window(10, 5, 40, 35)
        assert pair.grid.bounds == (UTM_X0 + 100, UTM_Y0 - 400, UTM_X0 + 500, UTM_Y0 - 50)
        assert pair.grid.transform == utm_transform(10, 5)
        _, image_b, valid = pair.read(Window(0, 0, 40, 35))
    assert valid.all()
    assert np.allclose(image_b * 65535, after_data[:, :35, :40], atol=0.01)


def test_fractional_offset_is_resampled_onto_the_before_grid(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(10, (40, 40)), colorinterp=RGB)
    after = write_raster(
        tmp_path / "a.tif", constant(200, (40, 40)), transform=utm_transform(10.5, 0.5), colorinterp=RGB
    )
    with RasterPair(before, after) as pair:
        # Overlap starts half a pixel into column 10 and row 0: snapped outward to whole pixels.
        assert pair.window == Window(10, 0, 30, 40)
        _, image_b, valid = full(pair)
    assert valid[1:-1, 1:].all()
    assert np.allclose(image_b[:, valid], 200 / 255, atol=1e-6)


# --- overlap and extent -----------------------------------------------------------------------


def test_partial_overlap_limits_the_grid(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(10, (40, 50)), colorinterp=RGB)
    after = write_raster(tmp_path / "a.tif", constant(20, (60, 30)), transform=utm_transform(35, -12), colorinterp=RGB)
    with RasterPair(before, after) as pair:
        assert (pair.grid.width, pair.grid.height) == (15, 40)
        assert pair.grid.bounds == (UTM_X0 + 350, UTM_Y0 - 400, UTM_X0 + 500, UTM_Y0)


def test_user_extent_is_snapped_outward(tmp_path: Path) -> None:
    before, after = rgb_pair(tmp_path)
    extent = (UTM_X0 + 105, UTM_Y0 - 295, UTM_X0 + 295, UTM_Y0 - 105)
    with RasterPair(before, after, extent=extent) as pair:
        assert pair.grid.bounds == (UTM_X0 + 100, UTM_Y0 - 300, UTM_X0 + 300, UTM_Y0 - 100)
        assert (pair.grid.width, pair.grid.height) == (20, 20)
        assert pair.grid.window_transform(Window(2, 3, 4, 4)) == utm_transform(12, 13)


def test_user_extent_is_clipped_to_the_overlap(tmp_path: Path) -> None:
    before, after = rgb_pair(tmp_path)  # 50 x 40 px
    extent = (UTM_X0 - 1000, UTM_Y0 - 200, UTM_X0 + 100, UTM_Y0 + 1000)
    with RasterPair(before, after, extent=extent) as pair:
        assert pair.grid.bounds == (UTM_X0, UTM_Y0 - 200, UTM_X0 + 100, UTM_Y0)


def test_exact_extent_is_not_grown(tmp_path: Path) -> None:
    before, after = rgb_pair(tmp_path)
    extent = (UTM_X0 + 100, UTM_Y0 - 300, UTM_X0 + 300, UTM_Y0 - 100)
    with RasterPair(before, after, extent=extent) as pair:
        assert pair.grid.bounds == extent


# --- nodata and validity ----------------------------------------------------------------------


def test_nodata_in_either_date_is_invalid(tmp_path: Path) -> None:
    before_data = constant(50, (20, 20))
    before_data[:, 2:4, 2:4] = 0
    before = write_raster(tmp_path / "b.tif", before_data, nodata=0, colorinterp=RGB)
    mask = np.ones((20, 20), dtype=bool)
    mask[10:12, 15:18] = False
    after = write_raster(tmp_path / "a.tif", constant(60, (20, 20)), mask=mask, colorinterp=RGB)
    with RasterPair(before, after) as pair:
        image_a, image_b, valid = full(pair)
    expected = np.ones((20, 20), dtype=bool)
    expected[2:4, 2:4] = False
    expected[10:12, 15:18] = False
    assert np.array_equal(valid, expected)
    assert np.all(image_a[:, ~valid] == 0) and np.all(image_b[:, ~valid] == 0)


def test_nan_and_nodata_through_reprojection_are_invalid(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(50, (40, 40)), colorinterp=RGB)
    west, _, east, north = transform_bounds(UTM31, "EPSG:3857", UTM_X0, UTM_Y0 - 400, UTM_X0 + 400, UTM_Y0)
    res = (east - west) / 50
    data = constant(0.5, (60, 60), dtype="float32")
    data[:, 20:30, :] = np.nan  # a band of NaN rows across the middle
    tf = from_origin(west - 5 * res, north + 5 * res, res, res)
    after = write_raster(tmp_path / "a.tif", data, crs="EPSG:3857", transform=tf, nodata=float("nan"))
    with RasterPair(before, after) as pair:
        _, image_b, valid = full(pair)
        xs, ys = pixel_centres(pair.grid)
    mx, my = transform(UTM31, "EPSG:3857", xs.ravel().tolist(), ys.ravel().tolist())
    after_rows = (~tf * (np.asarray(mx), np.asarray(my)))[1].reshape(xs.shape)
    # NaN covers after rows 20..30 (pixel coordinates); allow one after-pixel of blending at its edges.
    assert not valid[(after_rows > 21) & (after_rows < 29)].any()
    good = (after_rows < 19) | (after_rows > 31)
    assert valid[good].all()
    assert np.all(np.isfinite(image_b))


def test_boundless_read_beyond_the_grid(tmp_path: Path) -> None:
    before, after = rgb_pair(tmp_path, shape=(30, 40))
    with RasterPair(before, after) as pair:
        image_a, image_b, valid = pair.read(Window(30, 20, 32, 32))
        far_a, far_b, far_valid = pair.read(Window(100, 100, 8, 8))
        corner = pair.read(Window(-5, -5, 10, 10))[2]
    assert image_a.shape == image_b.shape == (3, 32, 32) and valid.shape == (32, 32)
    assert valid[:10, :10].all() and not valid[10:].any() and not valid[:, 10:].any()
    assert np.allclose(image_a[:, :10, :10], 50 / 255) and np.allclose(image_b[:, :10, :10], 200 / 255)
    assert np.all(image_a[:, 10:] == 0) and np.all(image_b[:, :, 10:] == 0)
    assert not far_valid.any() and not far_a.any() and not far_b.any()
    assert corner[5:, 5:].all() and not corner[:5].any() and not corner[:, :5].any()


# --- bad inputs -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    before, _ = rgb_pair(tmp_path)
    with pytest.raises(RasterError, match=r"nope\.tif does not exist"):
        RasterPair(before, tmp_path / "nope.tif")


def test_not_a_raster(tmp_path: Path) -> None:
    before, _ = rgb_pair(tmp_path)
    text = tmp_path / "notes.tif"
    text.write_text("these are field notes, not pixels\n")
    with pytest.raises(RasterError, match=r"notes\.tif is not a raster GDAL can read"):
        RasterPair(text, before)


def test_raster_without_crs(tmp_path: Path) -> None:
    before, _ = rgb_pair(tmp_path)
    bare = write_raster(tmp_path / "bare.tif", constant(1, (10, 10)), crs=None)
    with pytest.raises(RasterError, match=r"bare\.tif has no coordinate reference system.*gdal_edit\.py -a_srs"):
        RasterPair(before, bare)


def test_rasters_that_do_not_overlap(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(1, (10, 10)))
    after = write_raster(tmp_path / "a.tif", constant(1, (10, 10)), transform=utm_transform(10, 0))  # touching only
    with pytest.raises(RasterMismatchError, match=r"do not overlap") as err:
        RasterPair(before, after)
    assert "(500000, 5.4999e+06, 500100, 5.5e+06)" in str(err.value)
    assert "(500100, 5.4999e+06, 500200, 5.5e+06)" in str(err.value)


@pytest.mark.parametrize(
    ("extent", "fragment"),
    [
        ((UTM_X0 + 100, UTM_Y0 - 100, UTM_X0 + 100, UTM_Y0 - 50), "zero or negative size"),
        ((UTM_X0 + 100, UTM_Y0 - 50, UTM_X0 + 200, UTM_Y0 - 100), "zero or negative size"),
        ((UTM_X0 + 9000, UTM_Y0 - 100, UTM_X0 + 9100, UTM_Y0), "outside the overlap"),
        ((UTM_X0, UTM_Y0, UTM_X0 + 100, UTM_Y0 + 100), "outside the overlap"),  # touches the top edge only
        ((UTM_X0, math.nan, UTM_X0 + 100, UTM_Y0), "finite"),
    ],
)
def test_bad_extent(tmp_path: Path, extent: tuple[float, float, float, float], fragment: str) -> None:
    before, after = rgb_pair(tmp_path)
    with pytest.raises(InputError, match=fragment):
        RasterPair(before, after, extent=extent)


def test_overlap_without_valid_pixels(tmp_path: Path) -> None:
    # Each date has data, but never at the same place.
    left = np.zeros((3, 20, 20), np.uint8)
    left[:, :, :10] = 100
    before = write_raster(tmp_path / "b.tif", left, nodata=0, colorinterp=RGB)
    after = write_raster(tmp_path / "a.tif", left[:, :, ::-1].copy(), nodata=0, colorinterp=RGB)
    with pytest.raises(RasterError, match="the overlap holds no valid pixels in both dates"):
        RasterPair(before, after)


def open_files(*paths: Path) -> list[str]:
    """Paths among ``paths`` that this process holds open (Linux /proc)."""
    wanted = {str(p.resolve()) for p in paths}
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target in wanted:
            held.append(target)
    return held


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_errors_close_what_was_opened(tmp_path: Path) -> None:
    before, after = rgb_pair(tmp_path)
    bare = write_raster(tmp_path / "bare.tif", constant(1, (10, 10)), crs=None)
    # Keep the tracebacks (and with them the half-built pairs) alive: only an explicit close frees the files.
    with pytest.raises(RasterError) as no_crs:
        RasterPair(before, bare)
    with pytest.raises(InputError) as bad_extent:
        RasterPair(before, after, extent=(0.0, 0.0, 1.0, 1.0))
    assert open_files(before, after, bare) == []
    assert no_crs.traceback and bad_extent.traceback
    pair = RasterPair(before, after)
    assert open_files(before, after)  # held while open ...
    pair.close()
    assert open_files(before, after) == []  # ... and released by close()


def test_real_landsat_pair_grid() -> None:
    root = Path("/work/shared/data/landsat-pair")
    if not (root / "LS20010525.tif").exists():
        pytest.skip("the Landsat sample pair is not available")
    with RasterPair(root / "LS20010525.tif", root / "LS20010626.tif") as pair:
        assert (pair.grid.width, pair.grid.height) == (1000, 1000)
        assert pair.grid.crs.to_epsg() == 32631
        image_a, image_b, valid = pair.read(Window(0, 0, 256, 256))
    assert image_a.dtype == np.float32 and image_a.min() >= 0.0 and image_b.max() <= 1.0
    assert valid.any()


def test_nan_without_declared_nodata_is_invalid(tmp_path: Path) -> None:
    data = constant(0.25, (10, 10), dtype="float32")
    data[1, 4, 4] = np.nan  # one band of one pixel
    data[:, 7, 7] = np.inf
    before = write_raster(tmp_path / "b.tif", data)
    after = write_raster(tmp_path / "a.tif", constant(0.5, (10, 10), dtype="float32"))
    with RasterPair(before, after, stretch="none") as pair:
        image_a, _, valid = full(pair)
    assert not valid[4, 4] and not valid[7, 7] and valid.sum() == 98
    assert np.all(np.isfinite(image_a))


def test_read_overview_is_decimated_and_stretched(tmp_path: Path) -> None:
    data = constant(50, (300, 200))
    before = write_raster(tmp_path / "b.tif", data, colorinterp=RGB)
    after = write_raster(tmp_path / "a.tif", constant(200, (300, 200)), colorinterp=RGB)
    with RasterPair(before, after) as pair:
        image_a, image_b, valid = pair.read_overview(100)
    assert image_a.shape == image_b.shape == (3, 100, 67) and valid.shape == (100, 67)
    assert image_a.dtype == np.float32
    assert valid.all() and np.allclose(image_a, 50 / 255) and np.allclose(image_b, 200 / 255)
