"""Blend overlapping tile logits into one probability raster, a strip of rows at a time.

Tiles arrive in row-major order (:func:`backend.inference.tiling.tile_grid`). Each tile's change logit is
weighted by a separable raised-cosine window (:func:`blend_weights`) and summed into a rolling strip
of ``tile_size`` rows spanning the raster's width. When a tile starts on a lower row than the strip,
no later tile can touch the rows above it: they are final, so the weighted mean logit is turned into
a probability and handed to ``sink`` -- normally :mod:`backend.outputs.write`, which puts the rows straight
into the GeoTIFF on disk. That file *is* the disk-backed accumulator: the only in-memory state is the
strip, so memory is ``O(tile_size * width)`` however tall the raster is.

The weights are positive everywhere (a raised cosine over the overlap with a small floor), so a pixel
seen by one tile only gets that tile's value exactly, and where tiles agree the blend returns the
common value exactly: stitching introduces no seams.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
from scipy.special import expit

from backend.errors import InputError

_log = logging.getLogger(__name__)

#: ``sink(row_start, probability (rows, width) float32, valid (rows, width) bool)``.
RowSink = Callable[[int, np.ndarray, np.ndarray], None]

MASK_NODATA = 255  # value of mask pixels where either date has no data


class TileLike(Protocol):
    """What the stitcher needs from :class:`backend.inference.tiling.Tile`."""

    @property
    def row_off(self) -> int: ...  # noqa: D102

    @property
    def col_off(self) -> int: ...  # noqa: D102

    @property
    def size(self) -> int: ...  # noqa: D102


def blend_weights(size: int, overlap: int, floor: float = 1e-3) -> np.ndarray:
    """Return the 1-D blending weights of one tile side, float32 of length ``size``.

    The weight rises as a raised cosine across the first ``overlap`` pixels, stays at 1 in the middle
    and falls symmetrically across the last ``overlap`` pixels; it never drops below ``floor``, so the
    raster's outer edges (seen by one tile only) keep their value. The 2-D weight is the outer product.

    Args:
        size: Tile side in pixels.
        overlap: Overlap between neighbouring tiles in pixels, ``0 <= overlap < size``.
        floor: Smallest weight, in ``(0, 1]``.
    """
    if size < 1 or not 0 <= overlap < size:
        raise InputError(f"Tile size {size} and overlap {overlap} are invalid; need 0 <= overlap < size.")
    if not 0.0 < floor <= 1.0:
        raise InputError(f"Blend weight floor {floor} must be in (0, 1].")
    weights = np.ones(size, dtype=np.float64)
    if overlap > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
        weights[:overlap] = np.minimum(weights[:overlap], ramp)
        weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return np.maximum(weights, floor).astype(np.float32)


def to_mask(probability: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """Return the change mask: uint8 1 where ``probability >= threshold``, 0 elsewhere, 255 where invalid."""
    mask = (probability >= threshold).astype(np.uint8)
    mask[~valid] = MASK_NODATA
    return mask


class Stitcher:
    """Rolling-strip accumulator of weighted tile logits (see the module docstring).

    Args:
        height: Rows of the processing grid.
        width: Columns of the processing grid.
        tile_size: Side of every tile in pixels.
        overlap: Overlap between neighbouring tiles in pixels.
        sink: Receives final rows in order, each row exactly once.
        floor: Smallest blending weight (see :func:`blend_weights`).

    Raises:
        InputError: On invalid sizes, tiles out of row-major order, or tiles missing at ``finish``.
    """

    def __init__(
        self, height: int, width: int, tile_size: int, overlap: int, sink: RowSink, *, floor: float = 1e-3
    ) -> None:
        if height < 1 or width < 1:
            raise InputError(f"Raster size {width}x{height} is empty; nothing to stitch.")
        self.height = height
        self.width = width
        self.tile_size = tile_size
        weights = blend_weights(tile_size, overlap, floor)
        self._weights2d = np.outer(weights, weights)
        self._sink = sink
        rows = min(tile_size, height)
        self._sum = np.zeros((rows, width), dtype=np.float32)  # sum of weight * logit
        self._weight = np.zeros((rows, width), dtype=np.float32)  # sum of weight where valid
        self._valid = np.zeros((rows, width), dtype=bool)
        self._covered = np.zeros((rows, width), dtype=bool)
        self._strip_start = 0  # grid row of the strip's first row; rows above it were flushed
        self._last: tuple[int, int] = (-1, -1)
        self._finished = False

    @property
    def buffer_shape(self) -> tuple[int, int]:
        """Shape of the in-memory strip; it depends on tile size and width, never on height."""
        return (self._sum.shape[0], self._sum.shape[1])

    @property
    def rows_done(self) -> int:
        """Rows already handed to the sink."""
        return self._strip_start

    def add(self, tile: TileLike, logit: np.ndarray, valid: np.ndarray) -> None:
        """Blend one tile's logit ``(h, w)`` and validity ``(h, w)``; parts outside the grid are ignored."""
        if self._finished:
            raise InputError("Stitcher.add() called after finish(); create a new Stitcher per run.")
        if tile.size != self.tile_size:
            raise InputError(f"Tile size {tile.size} differs from the stitcher's {self.tile_size}.")
        if logit.ndim != 2 or logit.shape != valid.shape or logit.shape[0] > tile.size or logit.shape[1] > tile.size:
            raise InputError(
                f"Tile at row {tile.row_off}, column {tile.col_off}: logit {logit.shape} and valid "
                f"{valid.shape} must be equal 2-D shapes no larger than the tile ({tile.size})."
            )
        key = (tile.row_off, tile.col_off)
        if key <= self._last or tile.row_off < self._strip_start:
            raise InputError(
                f"Tile at row {tile.row_off}, column {tile.col_off} arrived after tile {self._last}; "
                "tiles must come in row-major order, each once."
            )
        if not (0 <= tile.row_off < self.height and 0 <= tile.col_off < self.width):
            raise InputError(f"Tile at row {tile.row_off}, column {tile.col_off} lies outside the grid.")
        self._last = key
        if tile.row_off > self._strip_start:
            self._flush(tile.row_off - self._strip_start)

        rows = min(logit.shape[0], self.height - tile.row_off)
        cols = min(logit.shape[1], self.width - tile.col_off)
        top = tile.row_off - self._strip_start
        target = np.s_[top : top + rows, tile.col_off : tile.col_off + cols]
        tile_valid = valid[:rows, :cols]
        weight = self._weights2d[:rows, :cols]
        if tile_valid.all():  # the common case: no masking needed
            self._sum[target] += weight * logit[:rows, :cols]
            self._weight[target] += weight
            self._valid[target] = True
        else:
            weight = weight * tile_valid
            self._sum[target] += weight * np.where(tile_valid, logit[:rows, :cols], 0)
            self._weight[target] += weight
            self._valid[target] |= tile_valid
        self._covered[target] = True

    def finish(self) -> None:
        """Hand every remaining row to the sink; every pixel must have been covered by a tile."""
        if self._finished:
            return
        self._flush(self.height - self._strip_start)
        self._finished = True

    def _flush(self, count: int) -> None:
        """Send the strip's first ``count`` rows to the sink and shift the rest up."""
        count = min(count, self.height - self._strip_start)
        if count <= 0:
            return
        if not self._covered[:count].all():
            missing_row = int(np.nonzero(~self._covered[:count].all(axis=1))[0][0]) + self._strip_start
            raise InputError(
                f"Row {missing_row} was not covered by any tile; tiles are missing or do not follow tile_grid()."
            )
        weight = self._weight[:count]
        valid = self._valid[:count].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_logit = np.where(valid, self._sum[:count] / np.where(valid, weight, 1.0), 0.0)
        probability = expit(mean_logit).astype(np.float32)
        probability[~valid] = 0.0
        _log.debug("stitch: rows %d-%d final", self._strip_start, self._strip_start + count - 1)
        self._sink(self._strip_start, probability, valid)

        keep = self._sum.shape[0] - count
        for buffer in (self._sum, self._weight, self._valid, self._covered):
            if keep > 0:
                buffer[:keep] = buffer[count:].copy()
            buffer[keep:] = 0
        self._strip_start += count
