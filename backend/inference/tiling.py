"""Overlapping square tiles over the processing grid, in a fixed row-major order.

Tiles start every ``stride = tile_size - overlap`` pixels along each axis; the number per axis
is ``max(1, ceil((length - overlap) / stride))``, the fewest that cover every pixel. The last
tile of a row or column may reach past the grid: :meth:`backend.raster.io.RasterPair.read` pads it
with invalid pixels, so every tile the model sees has the same size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rasterio.windows import Window

from backend.errors import InputError


@dataclass(frozen=True, slots=True)
class Tile:
    """One square tile of the grid.

    Attributes:
        index: Position in row-major order, from 0.
        row_off: Top row in grid pixels.
        col_off: Left column in grid pixels.
        size: Side in pixels (the tile may reach past the grid's bottom or right edge).
    """

    index: int
    row_off: int
    col_off: int
    size: int

    @property
    def window(self) -> Window:
        """The tile as a rasterio window in grid pixels."""
        from rasterio.windows import Window  # lazily: training and evaluation tile arrays without rasterio

        return Window(self.col_off, self.row_off, self.size, self.size)


def _check(height: int, width: int, tile_size: int, overlap: int) -> None:
    for name, value in (("height", height), ("width", width), ("tile_size", tile_size), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name}={value!r} must be a whole number of pixels.")
    if height < 1 or width < 1:
        raise InputError(f"The grid is {width}x{height} pixels; it needs at least one pixel each way.")
    if tile_size < 1:
        raise InputError(f"tile_size={tile_size} must be at least 1 pixel (the default is 256).")
    if not 0 <= overlap < tile_size:
        raise InputError(
            f"overlap={overlap} must be between 0 and tile_size - 1 ({tile_size - 1}); try {tile_size // 4}."
        )


def _starts(length: int, tile_size: int, overlap: int) -> range:
    stride = tile_size - overlap
    count = max(1, math.ceil((length - overlap) / stride))
    return range(0, count * stride, stride)


def count_tiles(height: int, width: int, tile_size: int = 256, overlap: int = 64) -> int:
    """Number of tiles :func:`tile_grid` returns, without building them."""
    _check(height, width, tile_size, overlap)
    return len(_starts(height, tile_size, overlap)) * len(_starts(width, tile_size, overlap))


def iter_tiles(height: int, width: int, tile_size: int = 256, overlap: int = 64) -> Iterator[Tile]:
    """Yield the tiles of :func:`tile_grid` one by one (validated before the first is yielded)."""
    _check(height, width, tile_size, overlap)
    return _generate(height, width, tile_size, overlap)


def _generate(height: int, width: int, tile_size: int, overlap: int) -> Iterator[Tile]:
    cols = _starts(width, tile_size, overlap)
    index = 0
    for row in _starts(height, tile_size, overlap):
        for col in cols:
            yield Tile(index=index, row_off=row, col_off=col, size=tile_size)
            index += 1


def tile_grid(height: int, width: int, tile_size: int = 256, overlap: int = 64) -> list[Tile]:
    """Tiles covering a ``height x width`` grid, in row-major order.

    Args:
        height: Grid rows.
        width: Grid columns.
        tile_size: Side of each square tile in pixels (the model card's, default 256).
        overlap: Pixels shared by neighbouring tiles (the model card's, default 64).

    Returns:
        Tiles left to right, then top to bottom, with ``index`` counting from 0. Every grid pixel
        lies in at least one tile; tiles in the last row or column may reach past the grid.

    Raises:
        InputError: a size is not a positive whole number, or ``overlap`` is not in ``[0, tile_size)``.
    """
    return list(iter_tiles(height, width, tile_size, overlap))
