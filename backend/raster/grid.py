"""The processing grid and the geometry that finds it: overlap, user extent, pixel snapping.

The grid is a window of the before raster's pixel grid; :func:`grid_window` finds it from the
footprints of both rasters (the after one transformed into the before raster's CRS) and an
optional user extent, snapped outward to whole before-pixels and clipped to the before raster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affine import Affine
from rasterio import windows
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from backend.errors import InputError, RasterMismatchError

Extent = tuple[float, float, float, float]
SNAP_TOL = 1e-6  # pixels; absorbs float noise before snapping an extent outward


@dataclass(frozen=True)
class Grid:
    """The processing grid: a window of the before raster's pixel grid, in its CRS."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> Extent:
        """(xmin, ymin, xmax, ymax) in ``crs``."""
        west, south, east, north = windows.bounds(Window(0, 0, self.width, self.height), self.transform)
        return (west, south, east, north)

    def window_transform(self, window: Window) -> Affine:
        """The affine transform of ``window`` (in grid pixels)."""
        return windows.transform(window, self.transform)


def footprint(src: Any) -> Extent:
    """(xmin, ymin, xmax, ymax) of a dataset's four corners in its own CRS."""
    corners = [src.transform * (c, r) for c in (0, src.width) for r in (0, src.height)]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return (min(xs), min(ys), max(xs), max(ys))


def intersect(a: Extent, b: Extent) -> Extent | None:
    """The intersection of two boxes, or None when it has no area."""
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[0] < box[2] and box[1] < box[3] else None


def fmt_box(box: Extent) -> str:
    """A box as ``(xmin, ymin, xmax, ymax)`` with six significant digits, for messages."""
    return "(" + ", ".join(f"{v:.6g}" for v in box) + ")"


def grid_window(before: Any, after: Any, before_path: Path, after_path: Path, extent: Extent | None) -> Window:
    """The before-raster window covering the overlap (or ``extent``), snapped outward to whole pixels."""
    box_a = footprint(before)
    box_b = footprint(after)
    if after.crs != before.crs:
        box_b = transform_bounds(after.crs, before.crs, *box_b, densify_pts=21)
    area = intersect(box_a, box_b)
    if area is None:
        raise RasterMismatchError(
            f"{before_path} and {after_path} do not overlap: in {before.crs} the before raster covers {fmt_box(box_a)} "
            f"and the after raster {fmt_box(box_b)}; choose two rasters of the same area."
        )
    if extent is not None:
        if len(extent) != 4 or not all(math.isfinite(v) for v in extent):
            raise InputError(f"extent={extent} must be four finite numbers xmin,ymin,xmax,ymax.")
        if extent[2] <= extent[0] or extent[3] <= extent[1]:
            raise InputError(f"extent={extent} has zero or negative size; give xmin,ymin,xmax,ymax with max > min.")
        clipped = intersect(extent, area)
        if clipped is None:
            raise InputError(
                f"extent={extent} lies outside the overlap of the two rasters, {fmt_box(area)} in {before.crs}; "
                "give an extent inside it, in the before raster's CRS."
            )
        area = clipped
    win = windows.from_bounds(*area, transform=before.transform)
    col0 = max(0, math.floor(win.col_off + SNAP_TOL))
    row0 = max(0, math.floor(win.row_off + SNAP_TOL))
    col1 = min(before.width, math.ceil(win.col_off + win.width - SNAP_TOL))
    row1 = min(before.height, math.ceil(win.row_off + win.height - SNAP_TOL))
    if col1 <= col0 or row1 <= row0:
        raise RasterMismatchError(
            f"The overlap of {before_path} and {after_path}, {fmt_box(area)}, is under one pixel."
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


def integer_shift(grid: Affine, other: Affine) -> tuple[int, int] | None:
    """Whole-pixel (col, row) offset of ``grid``'s origin in ``other``'s pixels, or None when the grids differ."""
    same_cell = all(math.isclose(getattr(grid, k), getattr(other, k), rel_tol=1e-9, abs_tol=1e-12) for k in "abde")
    if not same_cell:
        return None
    col, row = ~other * (grid.c, grid.f)
    if abs(col - round(col)) > SNAP_TOL or abs(row - round(row)) > SNAP_TOL:
        return None
    return round(col), round(row)
