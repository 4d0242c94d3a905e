"""Tests for backend.outputs.write: georeferencing, tiling, compression, atomic rename, clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from backend.errors import CanceledError, OutputError
from backend.outputs.write import AtomicGeoTiff, mask_writer, partial_path, probability_writer


@dataclass(frozen=True)
class _Grid:
    crs: CRS
    transform: object
    width: int
    height: int


@pytest.fixture
def grid():
    return _Grid(CRS.from_epsg(32633), from_origin(500000.0, 6000000.0, 10.0, 10.0), 300, 530)


def _probability(grid):
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    probability = ((rows + cols) % 101 / 100.0).astype(np.float32)
    valid = ~((rows < 20) & (cols < 30))
    return probability, valid


def _write_in_strips(writer, array, valid=None, strip=96):
    for start in range(0, array.shape[0], strip):
        if valid is None:
            writer.write_rows(start, array[start : start + strip])
        else:
            writer.write_rows(start, array[start : start + strip], valid[start : start + strip])


def _assert_layout(src, grid):
    assert src.crs == grid.crs
    assert src.transform == grid.transform
    assert (src.width, src.height) == (grid.width, grid.height)
    assert src.block_shapes == [(256, 256)]
    assert src.profile["tiled"]
    assert src.compression.name.lower() == "deflate"


def test_probability_uint8_has_layout_values_and_internal_mask(tmp_path, grid):
    probability, valid = _probability(grid)
    path = tmp_path / "probability.tif"
    with probability_writer(path, grid) as writer:
        _write_in_strips(writer, probability, valid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probability.tif"]  # no .msk, no .partial
    with rasterio.open(path) as src:
        _assert_layout(src, grid)
        assert src.dtypes == ("uint8",)
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
        assert [f.name for f in src.mask_flag_enums[0]] == ["per_dataset"]
        np.testing.assert_array_equal(src.read_masks(1) > 0, valid)
        data = src.read(1)
    np.testing.assert_array_equal(data[valid], np.rint(probability[valid] * 255).astype(np.uint8))


def test_probability_float16_uses_nan_nodata(tmp_path, grid):
    probability, valid = _probability(grid)
    path = tmp_path / "probability.tif"
    with probability_writer(path, grid, dtype="float16") as writer:
        _write_in_strips(writer, probability, valid, strip=200)
    with rasterio.open(path) as src:
        _assert_layout(src, grid)
        assert np.isnan(src.nodata)
        data = src.read(1)
        assert src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "16"
    assert np.isnan(data[~valid]).all()
    np.testing.assert_allclose(data[valid], probability[valid], atol=1e-3)
    assert not np.array_equal(data[valid], probability[valid])  # really stored as half floats


def test_mask_writer_has_nodata_255(tmp_path, grid):
    rng = np.random.default_rng(1)
    mask = rng.choice(np.array([0, 1, 255], np.uint8), size=(grid.height, grid.width))
    path = tmp_path / "mask.tif"
    with mask_writer(path, grid) as writer:
        _write_in_strips(writer, mask, strip=77)
    with rasterio.open(path) as src:
        _assert_layout(src, grid)
        assert src.nodata == 255
        np.testing.assert_array_equal(src.read(1), mask)


def test_rows_in_any_order_are_written(tmp_path, grid):
    data = np.arange(grid.height * grid.width, dtype=np.uint16).reshape(grid.height, grid.width)
    path = tmp_path / "x.tif"
    with AtomicGeoTiff(
        path, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height, dtype="uint16"
    ) as writer:
        writer.write_rows(300, data[300:])
        writer.write_rows(0, data[:300])
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), data)


def test_final_file_appears_only_on_success(tmp_path, grid):
    path = tmp_path / "mask.tif"
    with mask_writer(path, grid) as writer:
        writer.write_rows(0, np.zeros((100, grid.width), np.uint8))
        assert not path.exists()
        assert partial_path(path).exists()
    assert path.exists() and not partial_path(path).exists()


@pytest.mark.parametrize("error", [RuntimeError("boom"), CanceledError("canceled")])
def test_partial_removed_on_error_and_old_file_kept(tmp_path, grid, error):
    path = tmp_path / "probability.tif"
    path.write_bytes(b"previous result")
    with pytest.raises(type(error)), probability_writer(path, grid) as writer:
        writer.write_rows(0, np.zeros((300, grid.width), np.float32), np.ones((300, grid.width), bool))
        raise error
    assert path.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probability.tif"]


def test_rows_outside_the_grid_are_rejected_and_cleaned_up(tmp_path, grid):
    path = tmp_path / "mask.tif"
    with pytest.raises(OutputError, match="do not fit"), mask_writer(path, grid) as writer:
        writer.write_rows(grid.height - 10, np.zeros((20, grid.width), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_folder_under_a_file_is_an_output_error(tmp_path, grid):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    out = blocker / "sub" / "mask.tif"
    with pytest.raises(OutputError, match="afile") as info, mask_writer(out, grid):
        pass
    assert "--out" in str(info.value)
    assert isinstance(info.value, OSError)


def test_unwritable_folder_is_an_output_error(grid):
    out = Path("/proc/clipcd-test/mask.tif")  # /proc refuses new entries, even for root
    with pytest.raises(OutputError, match="--out"), mask_writer(out, grid):
        pass


def test_read_only_folder_is_an_output_error(tmp_path, grid):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            pytest.skip("permissions are not enforced for this user (root)")
        with pytest.raises(OutputError, match="ro"), mask_writer(folder / "mask.tif", grid):
            pass
    finally:
        folder.chmod(0o755)


def test_invalid_probability_dtype(tmp_path, grid):
    with pytest.raises(OutputError, match="float16"):
        probability_writer(tmp_path / "p.tif", grid, dtype="float64")  # type: ignore[arg-type]
