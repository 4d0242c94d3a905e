"""ChangeCLIP's LEVIR tiling protocol: cut 1024² images into 256² tiles at stride 192, merge predictions back.

The rule is read from the reference merge script, dyzy41/ChangeCLIP ``tools/merge_data.py``
(the author's cutting script is not published; issue #2 says to derive it from the merge):

- The padded side is ``((size - tile) // stride + 1) * stride + tile``: always one stride more
  than the tiles need, so even a side that tiles exactly is padded. The padding is split
  ``pad // 2`` before and the rest after, and filled by reflection (``np.pad(..., "reflect")``).
- Tiles start at ``0, stride, 2 * stride, ...`` in the padded frame up to ``padded - tile``:
  ``(size - tile) // stride + 2`` per side.
- Merging adds the 0/1 tile predictions, divides by the number of tiles covering each pixel
  and casts to uint8 (truncation), then crops the padding away: a pixel is change only when
  *every* covering tile says change (a logical AND on overlaps).

For 1024² LEVIR images that is 1024 -> 1216 (96 pixels of reflection on each side) and
**6 x 6 = 36 tiles per image**, not the 5 x 5 = 25 sometimes quoted (the reference loop
``while left <= w_new`` visits 256, 448, ..., 1216: six tile ends). The reference names tile
files ``<stem>_<ni>_<nj>`` with ``ni`` the 1-based column and ``nj`` the 1-based row; here
``row`` and ``col`` are 0-based tile indices and :mod:`training.data.prepare` writes
``<stem>_<row>_<col>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from backend.errors import InputError

TILE = 256
STRIDE = 192  # overlap 64


class Cut(NamedTuple):
    """One tile: its 0-based grid position and its pixels ``(..., tile, tile)``."""

    row: int
    col: int
    array: np.ndarray


def _check(tile: int, stride: int) -> None:
    if tile < 1 or not 0 < stride <= tile:
        raise InputError(f"tile={tile}, stride={stride}: need tile >= 1 and 0 < stride <= tile (e.g. 256 and 192).")


def padded_size(size: int, tile: int = TILE, stride: int = STRIDE) -> int:
    """The reference's padded side: ``((size - tile) // stride + 1) * stride + tile`` (1024 -> 1216)."""
    _check(tile, stride)
    if size < 1:
        raise InputError(f"An image side of {size} pixels cannot be tiled; images need at least one pixel.")
    return ((size - tile) // stride + 1) * stride + tile


def padding(size: int, tile: int = TILE, stride: int = STRIDE) -> tuple[int, int]:
    """Reflection added (before, after) along a side of ``size`` pixels: ``pad // 2`` before, the rest after."""
    pad = padded_size(size, tile, stride) - size
    return pad // 2, pad - pad // 2


def tile_starts(size: int, tile: int = TILE, stride: int = STRIDE) -> list[int]:
    """Start of every tile along a side of ``size`` pixels, in the padded frame (1024 -> 0, 192, ..., 960)."""
    return list(range(0, padded_size(size, tile, stride) - tile + 1, stride))


def pad_image(image: np.ndarray, tile: int = TILE, stride: int = STRIDE) -> np.ndarray:
    """``image`` ``(..., H, W)`` reflect-padded to the reference's padded frame."""
    height, width = image.shape[-2:]
    spec = [(0, 0)] * (image.ndim - 2) + [padding(height, tile, stride), padding(width, tile, stride)]
    return np.pad(image, spec, mode="reflect")


def cut(image: np.ndarray, tile: int = TILE, stride: int = STRIDE) -> list[Cut]:
    """Cut ``image`` ``(..., H, W)`` into reflect-padded tiles, row-major; together they cover every pixel."""
    if image.ndim < 2:
        raise InputError(f"cut needs an array of shape (..., H, W), got shape {image.shape}.")
    height, width = image.shape[-2:]
    padded = pad_image(image, tile, stride)
    return [
        Cut(i, j, np.ascontiguousarray(padded[..., top : top + tile, left : left + tile]))
        for i, top in enumerate(tile_starts(height, tile, stride))
        for j, left in enumerate(tile_starts(width, tile, stride))
    ]


def merge_and(
    cuts: Sequence[tuple[int, int, np.ndarray]], shape: tuple[int, int], tile: int = TILE, stride: int = STRIDE
) -> np.ndarray:
    """Merge 0/1 tile predictions back into an ``(H, W)`` uint8 0/1 map exactly as the reference does.

    Overlapping tiles are averaged and the average truncated to an integer, so a pixel is 1
    only when every tile covering it says 1; pixels no tile covers are 0.

    Args:
        cuts: ``(row, col, prediction (tile, tile))`` triples, e.g. :class:`Cut` objects.
        shape: ``(H, W)`` of the image that was cut.
        tile: Tile side.
        stride: Tile stride.

    Raises:
        InputError: A tile is outside the grid, has the wrong shape, or holds values other than 0 and 1.
    """
    height, width = shape
    rows, cols = tile_starts(height, tile, stride), tile_starts(width, tile, stride)
    total = np.zeros((rows[-1] + tile, cols[-1] + tile), dtype=np.int32)
    count = np.zeros_like(total)
    for row, col, array in cuts:
        if not (0 <= row < len(rows) and 0 <= col < len(cols)):
            raise InputError(f"Tile ({row}, {col}) is outside the {len(rows)} x {len(cols)} grid of a {shape} image.")
        if array.shape != (tile, tile):
            raise InputError(f"Tile ({row}, {col}) has shape {array.shape}; merge_and needs ({tile}, {tile}).")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(
                f"Tile ({row}, {col}) holds values outside 0/1 ({array.min()}..{array.max()}); "
                "pass class indices (divide 0/255 masks by 255)."
            )
        window = (slice(rows[row], rows[row] + tile), slice(cols[col], cols[col] + tile))
        total[window] += array.astype(np.int32)
        count[window] += 1
    merged = np.zeros(total.shape, dtype=np.uint8)
    covered = count > 0
    merged[covered] = (total[covered] // count[covered]).astype(np.uint8)  # = (sum / count).astype(uint8)
    top, left = padding(height, tile, stride)[0], padding(width, tile, stride)[0]
    return merged[top : top + height, left : left + width]
