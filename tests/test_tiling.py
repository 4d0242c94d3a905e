"""Tests for backend.inference.tiling: coverage, order, padding and argument checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rasterio.windows import Window

from backend.errors import InputError
from backend.inference.tiling import Tile, count_tiles, iter_tiles, tile_grid

SIZES = [1, 7, 31, 32, 64, 100, 191, 192, 255, 256, 257, 320, 448, 449, 700, 1000]
SETTINGS = [(256, 64), (256, 0), (64, 16), (32, 8), (33, 10), (16, 15), (1, 0)]


def coverage(tiles: list[Tile], height: int, width: int) -> np.ndarray:
    hits = np.zeros((height, width), dtype=np.int32)
    for tile in tiles:
        hits[tile.row_off : tile.row_off + tile.size, tile.col_off : tile.col_off + tile.size] += 1
    return hits


@pytest.mark.parametrize(("tile_size", "overlap"), SETTINGS)
def test_every_pixel_is_covered(tile_size: int, overlap: int) -> None:
    sizes = [s for s in SIZES if s <= 100] if tile_size < 32 else SIZES
    for height, width in itertools.product(sizes, repeat=2):
        tiles = tile_grid(height, width, tile_size, overlap)
        hits = coverage(tiles, height, width)
        assert hits.min() >= 1, (height, width, tile_size, overlap)
        assert len(tiles) == count_tiles(height, width, tile_size, overlap)


@pytest.mark.parametrize(("height", "width"), [(1000, 700), (256, 256), (100, 900), (1, 1)])
def test_tiles_are_the_fewest_that_cover(height: int, width: int) -> None:
    tile_size, overlap = 256, 64
    tiles = tile_grid(height, width, tile_size, overlap)
    rows = sorted({t.row_off for t in tiles})
    cols = sorted({t.col_off for t in tiles})
    # Dropping the last row or column of tiles would leave pixels uncovered.
    assert len(rows) == 1 or rows[-2] + tile_size < height
    assert len(cols) == 1 or cols[-2] + tile_size < width
    # Neighbours share exactly `overlap` pixels.
    assert all(b - a == tile_size - overlap for a, b in itertools.pairwise(rows))
    assert all(b - a == tile_size - overlap for a, b in itertools.pairwise(cols))


def test_known_layout() -> None:
    # 500 px with 256/64: stride 192, starts 0, 192, and 384 (which reaches to 640, past the edge).
    tiles = tile_grid(500, 200, 256, 64)
    assert [(t.index, t.row_off, t.col_off) for t in tiles] == [(0, 0, 0), (1, 192, 0), (2, 384, 0)]
    tiles = tile_grid(448, 449, 256, 64)
    assert sorted({t.row_off for t in tiles}) == [0, 192]  # 192 + 256 == 448: exact fit, no third row
    assert sorted({t.col_off for t in tiles}) == [0, 192, 384]


def test_raster_smaller_than_tile_gives_one_padded_tile() -> None:
    tiles = tile_grid(10, 20, 256, 64)
    assert tiles == [Tile(index=0, row_off=0, col_off=0, size=256)]
    assert tiles[0].window == Window(0, 0, 256, 256)


def test_exact_multiple_without_overlap_has_no_padding() -> None:
    tiles = tile_grid(512, 768, 256, 0)
    assert len(tiles) == 6
    assert max(t.row_off + t.size for t in tiles) == 512
    assert max(t.col_off + t.size for t in tiles) == 768
    assert coverage(tiles, 512, 768).max() == 1


def test_order_is_row_major_and_deterministic() -> None:
    first = tile_grid(900, 1300, 256, 64)
    second = tile_grid(900, 1300, 256, 64)
    assert first == second
    assert [t.index for t in first] == list(range(len(first)))
    keys = [(t.row_off, t.col_off) for t in first]
    assert keys == sorted(keys)
    assert list(iter_tiles(900, 1300, 256, 64)) == first


def test_window_matches_offsets() -> None:
    tile = Tile(index=3, row_off=192, col_off=384, size=256)
    assert tile.window == Window(col_off=384, row_off=192, width=256, height=256)


def test_defaults_are_256_and_64() -> None:
    assert tile_grid(1000, 1000) == tile_grid(1000, 1000, 256, 64)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((0, 10, 256, 64), "at least one pixel"),
        ((10, -1, 256, 64), "at least one pixel"),
        ((10, 10, 0, 0), "tile_size=0"),
        ((10, 10, 256, 256), "overlap=256"),
        ((10, 10, 256, -1), "overlap=-1"),
        ((10.5, 10, 256, 64), "height=10.5"),
        ((10, 10, 256.0, 64), "tile_size=256.0"),
        ((10, 10, 256, True), "overlap=True"),
    ],
)
def test_invalid_arguments_are_refused(args: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        tile_grid(*args)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        count_tiles(*args)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        iter_tiles(*args)  # type: ignore[arg-type]
