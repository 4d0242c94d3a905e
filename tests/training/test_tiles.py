"""training.data.tiles: ChangeCLIP's 256 / 192 reflect-padded tiling and its AND merge."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InputError
from training.data.tiles import Cut, cut, merge_and, padded_size, padding, tile_starts

RNG = np.random.default_rng(0)


def reference_merge(
    tile_preds: dict[tuple[int, int], np.ndarray], h: int, w: int, size: int, overlap: int
) -> np.ndarray:
    """The loop of dyzy41/ChangeCLIP tools/merge_data.py, transcribed (tiles keyed by 1-based (ni=col, nj=row))."""
    h_new = ((h - size) // (size - overlap) + 1) * (size - overlap) + size
    w_new = ((w - size) // (size - overlap) + 1) * (size - overlap) + size
    pad_u, pad_l = (h_new - h) // 2, (w_new - w) // 2
    pad_d, pad_r = h_new - h - pad_u, w_new - w - pad_l
    count = np.pad(np.zeros((h, w)), ((pad_u, pad_d), (pad_l, pad_r)), "reflect")
    pred = count.copy()
    left, ni = size, 0
    while left <= w_new:
        ni += 1
        down, nj = size, 0
        while down <= h_new:
            nj += 1
            pred[down - size : down, left - size : left] += tile_preds[(ni, nj)]
            count[down - size : down, left - size : left] += 1
            down += size - overlap
        left += size - overlap
    with np.errstate(invalid="ignore"):
        merged = (pred / count).astype(np.uint8)
    return merged[pad_u:-pad_d, pad_l:-pad_r]


def test_levir_protocol_numbers() -> None:
    assert padded_size(1024) == 1216
    assert padding(1024) == (96, 96)
    assert tile_starts(1024) == [0, 192, 384, 576, 768, 960]
    pieces = cut(np.zeros((3, 1024, 1024), dtype=np.uint8))
    assert len(pieces) == 36  # 6 x 6, not 5 x 5
    assert [(p.row, p.col) for p in pieces[:7]] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 0)]
    assert all(p.array.shape == (3, 256, 256) for p in pieces)


@pytest.mark.parametrize(
    ("size", "tile", "stride", "starts"),
    [
        (256, 256, 192, [0, 192]),  # an exact fit still gets one more stride, as in the reference
        (100, 256, 192, [0]),  # smaller than a tile: one tile of reflection
        (1, 4, 3, [0]),
        (300, 256, 192, [0, 192]),
        (37, 16, 12, [0, 12, 24]),  # 37 -> 40
    ],
)
def test_tile_starts(size: int, tile: int, stride: int, starts: list[int]) -> None:
    assert tile_starts(size, tile, stride) == starts
    assert starts[-1] + tile == padded_size(size, tile, stride) >= size + 1


@pytest.mark.parametrize(("height", "width", "tile", "stride"), [(37, 53, 16, 12), (5, 3, 4, 3), (300, 200, 256, 192)])
def test_cut_covers_every_pixel(height: int, width: int, tile: int, stride: int) -> None:
    image = np.arange(2 * height * width, dtype=np.int64).reshape(2, height, width)
    pieces = cut(image, tile, stride)
    top, left = padding(height, tile, stride)[0], padding(width, tile, stride)[0]
    rows, cols = tile_starts(height, tile, stride), tile_starts(width, tile, stride)
    seen = np.zeros((height, width), dtype=np.int64)
    for piece in pieces:
        assert piece.array.shape == (2, tile, tile)
        y0, x0 = rows[piece.row] - top, cols[piece.col] - left  # tile origin in image pixels
        ys = slice(max(0, y0), min(height, y0 + tile))
        xs = slice(max(0, x0), min(width, x0 + tile))
        inner = piece.array[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        assert np.array_equal(inner, image[:, ys, xs])  # the tile holds the image's own pixels there
        seen[ys, xs] += 1
    assert seen.min() >= 1


def test_padding_is_reflection() -> None:
    image = np.arange(10, dtype=np.int32)[None, :].repeat(3, axis=0)  # (3, 10): rows 3, cols 10
    piece = cut(image, tile=8, stride=6)[0]
    # width 10 -> padded 14, 2 before: columns 2, 1, then 0, 1, ...
    assert piece.array[0].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("shape", "tile", "stride"), [((1024, 1024), 256, 192), ((300, 301), 256, 192), ((37, 53), 16, 12), ((1, 1), 4, 3)]
)
def test_merge_inverts_cut(shape: tuple[int, int], tile: int, stride: int) -> None:
    mask = (RNG.random(shape) > 0.5).astype(np.uint8)
    merged = merge_and(cut(mask, tile, stride), shape, tile, stride)
    assert merged.dtype == np.uint8 and merged.shape == shape
    assert np.array_equal(merged, mask)


def test_and_on_overlaps() -> None:
    shape, tile, stride = (40, 40), 16, 12
    pieces = [Cut(p.row, p.col, np.ones_like(p.array)) for p in cut(np.zeros(shape, dtype=np.uint8), tile, stride)]
    pieces[5] = Cut(pieces[5].row, pieces[5].col, np.zeros((tile, tile), dtype=np.uint8))
    merged = merge_and(pieces, shape, tile, stride)
    top, left = padding(40, tile, stride)[0], padding(40, tile, stride)[0]
    y0 = tile_starts(40, tile, stride)[pieces[5].row] - top
    x0 = tile_starts(40, tile, stride)[pieces[5].col] - left
    expected = np.ones(shape, dtype=np.uint8)
    expected[max(0, y0) : y0 + tile, max(0, x0) : x0 + tile] = 0  # one dissenting tile wins its whole area
    assert np.array_equal(merged, expected)


@pytest.mark.parametrize(("h", "w", "tile", "stride"), [(64, 64, 16, 12), (45, 31, 16, 12), (20, 20, 8, 8)])
def test_merge_matches_the_reference_loop(h: int, w: int, tile: int, stride: int) -> None:
    rows, cols = tile_starts(h, tile, stride), tile_starts(w, tile, stride)
    preds = {
        (r, c): (RNG.random((tile, tile)) > 0.3).astype(np.uint8) for r in range(len(rows)) for c in range(len(cols))
    }
    ours = merge_and([(r, c, a) for (r, c), a in preds.items()], (h, w), tile, stride)
    reference = reference_merge({(c + 1, r + 1): a for (r, c), a in preds.items()}, h, w, tile, tile - stride)
    assert np.array_equal(ours, reference)


def test_merge_refuses_bad_tiles() -> None:
    ones = np.ones((16, 16), dtype=np.uint8)
    with pytest.raises(InputError, match=r"outside 0/1 .*divide 0/255 masks by 255"):
        merge_and([(0, 0, ones * 255)], (20, 20), 16, 12)
    with pytest.raises(InputError, match=r"outside the 2 x 2 grid"):
        merge_and([(2, 0, ones)], (20, 20), 16, 12)
    with pytest.raises(InputError, match=r"has shape \(8, 8\)"):
        merge_and([(0, 0, ones[:8, :8])], (20, 20), 16, 12)
    with pytest.raises(InputError, match=r"stride"):
        tile_starts(20, 16, 0)
