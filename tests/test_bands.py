"""Tests for backend.raster.bands through RasterPair: band selection and the radiometric stretch.

Every test writes real GeoTIFFs with rasterio (tests/rasters.py) into ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from backend.errors import InputError, RasterError, RasterMismatchError
from backend.raster.io import RasterPair, sample_shape
from tests.rasters import RGB, RGBA, constant, ramp, rgb_pair, write_raster

GREY = (ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined)


def full(pair: RasterPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return pair.read(Window(0, 0, pair.grid.width, pair.grid.height))


# --- band selection ---------------------------------------------------------------------------


def test_bgr_file_is_read_by_colour_interpretation(tmp_path: Path) -> None:
    bgr = np.stack(
        [constant(30, (8, 8), bands=1)[0], constant(60, (8, 8), bands=1)[0], constant(90, (8, 8), bands=1)[0]]
    )
    before = write_raster(tmp_path / "b.tif", bgr, colorinterp=(ColorInterp.blue, ColorInterp.green, ColorInterp.red))
    after = write_raster(tmp_path / "a.tif", bgr[::-1].copy(), colorinterp=RGB)
    with RasterPair(before, after) as pair:
        assert pair.bands_before == (3, 2, 1)
        assert pair.bands_after == (1, 2, 3)
        image_a, image_b, _ = full(pair)
    expected = np.array([90, 60, 30]) / 255
    assert np.allclose(image_a[:, 0, 0], expected) and np.allclose(image_b[:, 0, 0], expected)


def test_rgba_alpha_is_dropped_and_masks(tmp_path: Path) -> None:
    data = constant(100, (8, 8), bands=4)
    data[3] = 255
    data[3, :2, :] = 0  # the top two rows are transparent
    before = write_raster(tmp_path / "b.tif", data, colorinterp=RGBA)
    after = write_raster(tmp_path / "a.tif", constant(100, (8, 8)), colorinterp=RGB)
    with RasterPair(before, after) as pair:
        assert pair.bands_before == (1, 2, 3)
        image_a, _, valid = full(pair)
    assert not valid[:2].any() and valid[2:].all()
    assert np.allclose(image_a[:, 2:], 100 / 255)


def test_without_colour_interpretation_first_three_non_alpha_bands(tmp_path: Path) -> None:
    data = np.stack([np.full((6, 6), v, np.uint8) for v in (10, 20, 30, 40)])
    before = write_raster(tmp_path / "b.tif", data, colorinterp=(*GREY, ColorInterp.undefined))
    after = write_raster(tmp_path / "a.tif", data, colorinterp=(*GREY, ColorInterp.undefined))
    with RasterPair(before, after) as pair:
        assert pair.bands_before == pair.bands_after == (1, 2, 3)
        image_a, _, _ = full(pair)
    assert np.allclose(image_a[:, 0, 0], np.array([10, 20, 30]) / 255)


def test_explicit_band_mapping(tmp_path: Path) -> None:
    data = np.stack([np.full((6, 6), v, np.uint8) for v in (10, 20, 30, 40)])
    before = write_raster(tmp_path / "b.tif", data, colorinterp=(*GREY, ColorInterp.undefined))
    after = write_raster(tmp_path / "a.tif", data[:3], colorinterp=RGB)
    with RasterPair(before, after, bands=(3, 2, 1)) as pair:
        image_a, image_b, _ = full(pair)
    assert np.allclose(image_a[:, 0, 0], np.array([30, 20, 10]) / 255)
    assert np.allclose(image_b[:, 0, 0], np.array([30, 20, 10]) / 255)


def test_single_band_needs_bands_option(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(80, (6, 6), bands=1))
    after = write_raster(tmp_path / "a.tif", constant(90, (6, 6), bands=1))
    with pytest.raises(RasterError, match=r"b\.tif has 1 band.*--bands 1,1,1"):
        RasterPair(before, after)
    with RasterPair(before, after, bands=(1, 1, 1)) as pair:
        image_a, image_b, _ = full(pair)
    assert np.allclose(image_a, 80 / 255) and np.allclose(image_b, 90 / 255)


def test_different_band_counts_are_refused(tmp_path: Path) -> None:
    before = write_raster(tmp_path / "b.tif", constant(1, (6, 6), bands=3), colorinterp=GREY)
    after = write_raster(tmp_path / "a.tif", constant(1, (6, 6), bands=5), colorinterp=(*GREY, *GREY[1:]))
    with pytest.raises(RasterMismatchError, match=r"b\.tif has 3 bands and .*a\.tif has 5 bands.*--bands"):
        RasterPair(before, after)
    with RasterPair(before, after, bands=(1, 2, 3)) as pair:
        assert pair.bands_after == (1, 2, 3)


@pytest.mark.parametrize("bands", [(1, 2, 4), (0, 1, 2), (1, 2)])
def test_bands_out_of_range(tmp_path: Path, bands: tuple[int, ...]) -> None:
    before, after = rgb_pair(tmp_path)
    with pytest.raises(InputError, match=r"bands=") as err:
        RasterPair(before, after, bands=bands)
    if len(bands) == 3:
        assert "before.tif has 3 bands" in str(err.value)


# --- stretch ----------------------------------------------------------------------------------


def test_uint16_percentile_stretch(tmp_path: Path) -> None:
    data = ramp((100, 100), dtype="uint16")  # band b holds b*1000 + 0..9999
    before = write_raster(tmp_path / "b.tif", data)
    after = write_raster(tmp_path / "a.tif", data)
    with RasterPair(before, after) as pair:
        low, high = pair.stretch_before.low, pair.stretch_before.high
        image_a, _, _ = full(pair)
    assert low[0] == pytest.approx(199.98) and high[0] == pytest.approx(9799.02)
    assert low[2] == pytest.approx(2199.98) and high[2] == pytest.approx(11799.02)
    assert image_a[0, 0, 0] == 0.0  # value 0, below the 2nd percentile
    assert image_a[0, 99, 99] == 1.0  # value 9999, above the 98th
    assert image_a[0, 50, 0] == pytest.approx((5000 - 199.98) / (9799.02 - 199.98), abs=1e-6)
    assert image_a[2, 50, 0] == pytest.approx((7000 - 2199.98) / (11799.02 - 2199.98), abs=1e-6)


def test_stretch_modes(tmp_path: Path) -> None:
    data = (ramp((20, 20), dtype="uint16") % 200 + 20).astype(np.uint8)
    before = write_raster(tmp_path / "b.tif", data)
    after = write_raster(tmp_path / "a.tif", (data.astype(np.uint16) * 100))
    with RasterPair(before, after, stretch="none") as pair:
        image_a, image_b, _ = full(pair)
    assert np.allclose(image_a, data / 255) and np.allclose(image_b, data.astype(np.float64) * 100 / 65535)
    with RasterPair(before, after, stretch="percentile") as pair:
        image_a, image_b, _ = full(pair)
        assert pair.stretch_before.low[0] > 20
    assert image_a.min() == 0.0 and image_a.max() == 1.0
    assert np.allclose(image_a, image_b, atol=1e-5)  # same data up to a factor: same stretch result
    with pytest.raises(InputError, match="stretch='gamma'"):
        RasterPair(before, after, stretch="gamma")  # type: ignore[arg-type]


def test_float_auto_stretch_and_none_clips(tmp_path: Path) -> None:
    data = np.linspace(-0.5, 1.5, 3 * 10 * 10, dtype=np.float32).reshape(3, 10, 10)
    before = write_raster(tmp_path / "b.tif", data)
    after = write_raster(tmp_path / "a.tif", data)
    with RasterPair(before, after, stretch="none") as pair:
        image_a, _, _ = full(pair)
    assert np.allclose(image_a, np.clip(data, 0, 1))
    with RasterPair(before, after) as pair:
        image_a, _, _ = full(pair)
    assert image_a.min() == 0.0 and image_a.max() == 1.0


def test_sample_shape_caps_the_longest_side() -> None:
    assert sample_shape(2048, 1024) == (1024, 512)
    assert sample_shape(100, 50) == (100, 50)
    assert sample_shape(5000, 3) == (1024, 1)
    assert sample_shape(3000, 3000, 256) == (256, 256)


def test_stretch_comes_from_the_overview_not_a_full_read(tmp_path: Path) -> None:
    # Overviews hold 1000..2000; the full-resolution pixels are then overwritten with 30000..40000
    # (GDAL does not refresh overviews on write). A stretch measured at full resolution would
    # see only the second range.
    rng = np.random.default_rng(0)
    shape = (2048, 2048)
    first = rng.integers(1000, 2001, size=(3, *shape), dtype=np.uint16)
    path = write_raster(tmp_path / "big.tif", first, overviews=(2, 4), tiled=True)
    with rasterio.open(path, "r+") as dst:
        dst.write(rng.integers(30000, 40001, size=(3, *shape), dtype=np.uint16))
    with RasterPair(path, path) as pair:
        assert all(1000 <= v <= 2000 for v in (*pair.stretch_before.low, *pair.stretch_before.high))
        _, _, valid = pair.read(Window(0, 0, 64, 64))
    assert valid.all()


def test_stretch_is_measured_where_both_dates_have_data(tmp_path: Path) -> None:
    """Pixels only one date covers must not move its stretch: both are measured on the same ground."""
    rng = np.random.default_rng(2)
    before = rng.integers(1000, 2000, size=(3, 64, 64)).astype(np.uint16)
    before[:, :, 32:] = 30000  # bright ground that the after raster does not cover
    after = before.copy()
    after[:, :, 32:] = 0
    a = write_raster(tmp_path / "before.tif", before)
    b = write_raster(tmp_path / "after.tif", after, nodata=0)
    with RasterPair(a, b) as pair:
        assert max(pair.stretch_before.high) < 2000 and min(pair.stretch_before.low) >= 1000
        image_a, image_b, valid = pair.read(Window(0, 0, 32, 64))
    np.testing.assert_allclose(image_a[:, valid], image_b[:, valid], atol=1e-6)  # same pixels, same values
