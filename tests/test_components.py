"""Streamed region statistics equal a whole-array computation, across strip boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from backend.outputs import components
from backend.progress import never_canceled, no_progress
from tests.rasters import write_raster


@pytest.mark.parametrize("strip_pixels", [64 * 7, 64 * 64, 4 * 2**20])
def test_region_stats_match_the_whole_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strip_pixels: int) -> None:
    monkeypatch.setattr(components, "STRIP_PIXELS", strip_pixels)  # 7-row strips cut through most regions
    rng = np.random.default_rng(3)
    change = ndimage.binary_opening(rng.random((96, 64)) > 0.45)  # blobs, snakes and holes
    change[40:60, 5:9] = True  # a tall region crossing several strips
    mask = np.where(change, 1, 0).astype(np.uint8)
    mask[:3, :] = 255  # nodata is never a region
    probability = rng.integers(0, 256, size=mask.shape, dtype=np.uint8)
    mask_path = write_raster(tmp_path / "mask.tif", mask)
    prob_path = write_raster(tmp_path / "prob.tif", probability)

    labels, count = ndimage.label(mask == 1)
    rows, cols = [], []
    for region in range(1, count + 1):
        r, c = np.argwhere(labels == region)[0]
        rows.append(r)
        cols.append(c)
    rows_a, cols_a = np.array(rows), np.array(cols)
    means, maxes = components.region_stats(mask_path, prob_path, rows_a, cols_a, no_progress, never_canceled)

    values = probability / 255.0
    index = np.arange(1, count + 1)
    np.testing.assert_allclose(means, ndimage.mean(values, labels, index), rtol=1e-5)
    np.testing.assert_allclose(maxes, ndimage.maximum(values, labels, index), rtol=1e-6)


def test_a_point_outside_every_region_gives_nan(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 1
    mask_path = write_raster(tmp_path / "mask.tif", mask)
    prob_path = write_raster(tmp_path / "prob.tif", np.full((8, 8), 255, dtype=np.uint8))
    means, maxes = components.region_stats(
        mask_path, prob_path, np.array([2, 6]), np.array([2, 6]), no_progress, never_canceled
    )
    assert means[0] == pytest.approx(1.0) and maxes[0] == pytest.approx(1.0)
    assert np.isnan(means[1]) and np.isnan(maxes[1])
