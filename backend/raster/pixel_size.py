"""A raster's pixel size in metres, whatever its CRS.

Projected CRSs: the pixel's sides in the CRS's linear unit times that unit's length in metres
(US survey feet, international feet, metres...). Geographic CRSs: the geodesic length of one
pixel step on the CRS's own ellipsoid at the raster's centre, x along the parallel and y along
the meridian (so x shrinks with the cosine of the latitude). Rotated grids take the length of
each pixel axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from affine import Affine

PixelSize = tuple[float, float]


def _axis_lengths(transform: Affine) -> tuple[float, float]:
    """Length of one pixel step along the columns and along the rows, in CRS units."""
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def pixel_size_m(crs: Any, transform: Affine, width: int, height: int) -> PixelSize | None:
    """``(x, y)`` size of a pixel in metres, or None for a raster without a CRS.

    Args:
        crs: A rasterio CRS (or anything ``pyproj.CRS.from_user_input`` takes); None when unknown.
        transform: The raster's affine transform.
        width: Columns, to find the centre of a geographic raster.
        height: Rows, likewise.
    """
    if crs is None or not str(crs):
        return None
    from pyproj import CRS as ProjCRS

    proj = ProjCRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    step_x, step_y = _axis_lengths(transform)
    if not proj.is_geographic:
        factor = proj.axis_info[0].unit_conversion_factor if proj.axis_info else 1.0
        return step_x * factor, step_y * factor
    geod = proj.get_geod()
    if geod is None:  # pragma: no cover - every geographic CRS pyproj reads has an ellipsoid
        return None
    col, row = width / 2.0, height / 2.0  # one pixel step across the centre, along each axis
    size_x = geod.inv(*(transform * (col - 0.5, row)), *(transform * (col + 0.5, row)))[2]
    size_y = geod.inv(*(transform * (col, row - 0.5)), *(transform * (col, row + 0.5)))[2]
    return abs(size_x), abs(size_y)


def describe(size: PixelSize | None) -> str:
    """``"10.0 m"`` or ``"10.0 x 9.8 m"``; ``"unknown (no CRS)"`` for None."""
    if size is None:
        return "unknown (no CRS)"
    x, y = size
    if math.isclose(x, y, rel_tol=0.02):
        return f"{_metres(x)} m"
    return f"{_metres(x)} x {_metres(y)} m"


def _metres(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


RANGE_FACTOR = 1.5  # how far beyond either end of the model's range a pixel size may lie before the warning


def outside_range(size: PixelSize | None, span: Sequence[float] | None, factor: float = RANGE_FACTOR) -> bool:
    """Whether ``size`` (its mean side) lies more than ``factor`` times beyond either end of ``span``."""
    if size is None or span is None:
        return False
    mean = (size[0] + size[1]) / 2.0
    low, high = span
    return mean > high * factor or mean < low / factor


def range_warning(size: PixelSize | None, span: Sequence[float] | None, model: str = "the model") -> str | None:
    """The warning for a raster whose pixels lie outside ``model``'s training range, or None when they fit.

    One rule for every front end: the engine logs it, and the plugin shows what the engine logged.
    """
    if size is None or span is None or not outside_range(size, span):
        return None
    low, high = span
    coarse = (size[0] + size[1]) / 2.0 > high
    target = high if coarse else low
    effect = "finds little or no change at this scale" if coarse else "sees objects larger than it was trained on"
    return (
        f"The rasters' pixels are {describe(size)} but {model} was trained on {low:g}-{high:g} m pixels: it "
        f"{effect}. Use a model trained for {describe(size)} pixels, or resample the rasters to about {target:g} m "
        f"(e.g. gdalwarp -tr {target:g} {target:g} -r bilinear in.tif out.tif)."
    )


def raster_pixel_size_m(path: str | os.PathLike[str]) -> list[float] | None:
    """``[x, y]`` pixel size in metres of the raster at ``path`` (3 decimals); None when it cannot be read."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            size = pixel_size_m(src.crs, src.transform, src.width, src.height)
    except (RasterioError, OSError):
        return None
    return None if size is None else [round(size[0], 3), round(size[1], 3)]
