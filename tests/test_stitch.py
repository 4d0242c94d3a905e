"""Tests for backend.outputs.stitch: seamless blending, row order, bounded memory, validity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import expit

from backend.errors import InputError
from backend.outputs.stitch import MASK_NODATA, Stitcher, blend_weights, to_mask


@dataclass(frozen=True)
class _Tile:
    """Stand-in for backend.inference.tiling.Tile with the same fields."""

    index: int
    row_off: int
    col_off: int
    size: int


def _tiles(height: int, width: int, size: int, overlap: int) -> list[_Tile]:
    """Row-major tiles as tiling.tile_grid lays them out (edge tiles may reach past the grid)."""
    stride = size - overlap
    rows = range(0, max(1, math.ceil((height - overlap) / stride)) * stride, stride)
    cols = range(0, max(1, math.ceil((width - overlap) / stride)) * stride, stride)
    return [_Tile(i, r, c, size) for i, (r, c) in enumerate((r, c) for r in rows for c in cols)]


def _field(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A smooth, non-linear logit field of global position."""
    return (0.02 * rows - 0.015 * cols + np.sin(rows / 7.0) * np.cos(cols / 5.0)).astype(np.float32)


class _Collector:
    def __init__(self, height: int, width: int) -> None:
        self.probability = np.full((height, width), np.nan, dtype=np.float32)
        self.valid = np.zeros((height, width), dtype=bool)
        self.starts: list[tuple[int, int]] = []

    def __call__(self, row_start: int, probability: np.ndarray, valid: np.ndarray) -> None:
        assert probability.dtype == np.float32 and valid.dtype == bool
        assert probability.shape == valid.shape
        self.starts.append((row_start, probability.shape[0]))
        self.probability[row_start : row_start + probability.shape[0]] = probability
        self.valid[row_start : row_start + probability.shape[0]] = valid


def _run(height, width, size, overlap, valid_fn=None, full_tiles=True):
    sink = _Collector(height, width)
    stitcher = Stitcher(height, width, size, overlap, sink)
    shapes = set()
    for tile in _tiles(height, width, size, overlap):
        rows, cols = np.mgrid[tile.row_off : tile.row_off + size, tile.col_off : tile.col_off + size]
        logit = _field(rows, cols)
        valid = np.ones_like(logit, dtype=bool) if valid_fn is None else valid_fn(rows, cols)
        if not full_tiles:  # a predictor may also hand over only the part inside the grid
            logit = logit[: height - tile.row_off, : width - tile.col_off]
            valid = valid[: height - tile.row_off, : width - tile.col_off]
        stitcher.add(tile, logit, valid)
        shapes.add(stitcher.buffer_shape)
    stitcher.finish()
    return sink, shapes


@pytest.mark.parametrize(
    ("height", "width", "size", "overlap"),
    [(100, 130, 32, 8), (64, 64, 32, 0), (20, 17, 32, 8), (1, 1, 16, 4), (97, 41, 16, 15), (250, 33, 64, 16)],
)
@pytest.mark.parametrize("full_tiles", [True, False])
def test_stitched_probability_is_seamless(height, width, size, overlap, full_tiles):
    sink, _ = _run(height, width, size, overlap, full_tiles=full_tiles)
    rows, cols = np.mgrid[0:height, 0:width]
    np.testing.assert_allclose(sink.probability, expit(_field(rows, cols)), atol=1e-5, rtol=0)
    assert sink.valid.all()


@pytest.mark.parametrize(("height", "size", "overlap"), [(100, 32, 8), (513, 64, 16), (31, 32, 4)])
def test_sink_gets_every_row_once_in_order(height, size, overlap):
    sink, _ = _run(height, 50, size, overlap)
    covered = []
    for start, count in sink.starts:
        assert count > 0
        covered.extend(range(start, start + count))
    assert covered == list(range(height))


def test_buffers_do_not_grow_with_height():
    _, small = _run(40, 70, 32, 8)
    _, tall = _run(1000, 70, 32, 8)
    assert small == tall == {(32, 70)}


def test_raster_shorter_than_a_tile_gets_a_short_buffer():
    _, shapes = _run(10, 70, 32, 8)
    assert shapes == {(10, 70)}


def test_validity_propagates_and_invalid_pixels_do_not_leak():
    def valid_fn(rows, cols):
        return ~((rows >= 30) & (rows < 45) & (cols >= 10) & (cols < 20))

    sink, _ = _run(90, 60, 32, 8, valid_fn=valid_fn)
    rows, cols = np.mgrid[0:90, 0:60]
    expected_valid = valid_fn(rows, cols)
    np.testing.assert_array_equal(sink.valid, expected_valid)
    assert (sink.probability[~expected_valid] == 0).all()
    np.testing.assert_allclose(sink.probability[expected_valid], expit(_field(rows, cols))[expected_valid], atol=1e-5)


def test_one_tile_invalid_where_another_is_valid_keeps_the_valid_value():
    sink = _Collector(10, 20)
    stitcher = Stitcher(10, 20, 12, 4, sink)
    left = np.full((12, 12), 2.0, np.float32)
    right = np.full((12, 12), 2.0, np.float32)
    right_valid = np.ones((12, 12), bool)
    right_valid[:, :4] = False  # the overlap columns 8..11 are invalid in the right tile only
    right[:, :4] = 100.0  # garbage under invalid pixels must not leak in
    stitcher.add(_Tile(0, 0, 0, 12), left, np.ones((12, 12), bool))
    stitcher.add(_Tile(1, 0, 8, 12), right, right_valid)
    stitcher.finish()
    np.testing.assert_allclose(sink.probability, expit(2.0), atol=1e-6)
    assert sink.valid.all()


def test_out_of_order_tile_is_an_error():
    stitcher = Stitcher(100, 100, 32, 8, lambda *a: None)
    tiles = _tiles(100, 100, 32, 8)
    block = np.zeros((32, 32), np.float32), np.ones((32, 32), bool)
    for tile in tiles[:5]:  # the first row of four tiles and the first of the second row
        stitcher.add(tile, *block)
    with pytest.raises(InputError, match="row-major"):
        stitcher.add(tiles[3], *block)


def test_out_of_order_within_a_row_is_an_error():
    stitcher = Stitcher(100, 100, 32, 8, lambda *a: None)
    tiles = _tiles(100, 100, 32, 8)
    block = np.zeros((32, 32), np.float32), np.ones((32, 32), bool)
    stitcher.add(tiles[1], *block)
    with pytest.raises(InputError, match="row-major"):
        stitcher.add(tiles[0], *block)


def test_repeated_tile_is_an_error():
    stitcher = Stitcher(100, 100, 32, 8, lambda *a: None)
    tile = _tiles(100, 100, 32, 8)[0]
    block = np.zeros((32, 32), np.float32), np.ones((32, 32), bool)
    stitcher.add(tile, *block)
    with pytest.raises(InputError):
        stitcher.add(tile, *block)


@pytest.mark.parametrize("skip", [2, -1])
def test_missing_tiles_are_an_error(skip):
    stitcher = Stitcher(100, 100, 32, 8, lambda *a: None)
    tiles = _tiles(100, 100, 32, 8)
    del tiles[skip]
    block = np.zeros((32, 32), np.float32), np.ones((32, 32), bool)
    with pytest.raises(InputError, match="not covered"):
        for tile in tiles:
            stitcher.add(tile, *block)
        stitcher.finish()


def test_wrong_shapes_are_errors():
    stitcher = Stitcher(50, 50, 32, 8, lambda *a: None)
    with pytest.raises(InputError):
        stitcher.add(_Tile(0, 0, 0, 32), np.zeros((33, 32), np.float32), np.ones((33, 32), bool))
    with pytest.raises(InputError):
        stitcher.add(_Tile(0, 0, 0, 16), np.zeros((16, 16), np.float32), np.ones((16, 16), bool))


def test_blend_weights_shape_and_floor():
    weights = blend_weights(64, 16, floor=1e-3)
    assert weights.shape == (64,) and weights.dtype == np.float32
    assert weights.min() >= 1e-3
    np.testing.assert_allclose(weights[16:48], 1.0)
    np.testing.assert_allclose(weights, weights[::-1])
    assert np.all(np.diff(weights[:16]) > 0)
    # overlapping ramps of neighbours add up to one, so blending stays smooth
    np.testing.assert_allclose(weights[:16] + weights[48:], 1.0, atol=1e-6)
    np.testing.assert_array_equal(blend_weights(8, 0), np.ones(8, np.float32))


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (8, 8), (8, -1)])
def test_blend_weights_rejects_bad_sizes(size, overlap):
    with pytest.raises(InputError):
        blend_weights(size, overlap)


def test_to_mask_thresholds_and_marks_nodata():
    probability = np.array([[0.1, 0.5, 0.9]], np.float32)
    valid = np.array([[True, True, False]])
    np.testing.assert_array_equal(to_mask(probability, valid, 0.5), [[0, 1, MASK_NODATA]])
    assert to_mask(probability, valid, 0.5).dtype == np.uint8
