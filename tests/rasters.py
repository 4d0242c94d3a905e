"""Tiny georeferenced GeoTIFFs for tests, written with rasterio into ``tmp_path``.

Every helper writes a real GTiff with a real CRS and an ``Affine`` transform, so the
code under test goes through GDAL exactly as it would with user data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import from_origin

UTM31 = "EPSG:32631"
# UTM scales its central meridian by k0 = 0.9996, so areas there are planar / 0.9996² on the ground.
UTM_AREAL = 0.9996**2
# A 10 m UTM 31N grid origin in northern France; every test raster starts near here.
UTM_X0 = 500_000.0
UTM_Y0 = 5_500_000.0

RGB = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
RGBA = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)


def utm_transform(col: float = 0.0, row: float = 0.0, res: float = 10.0) -> Affine:
    """North-up UTM transform whose origin is ``(col, row)`` 10 m pixels from the shared origin."""
    return from_origin(UTM_X0 + col * 10.0, UTM_Y0 - row * 10.0, res, res)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM31,
    transform: Affine | None = None,
    nodata: float | None = None,
    colorinterp: Sequence[ColorInterp] | None = None,
    mask: np.ndarray | None = None,
    overviews: Sequence[int] = (),
    tiled: bool = False,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write ``data`` ``(bands, h, w)`` (or ``(h, w)``) as a GeoTIFF and return its path.

    ``mask`` (bool ``(h, w)``, True = valid) becomes an internal GDAL mask band;
    ``colorinterp`` ending in alpha marks the last band as alpha; ``overviews`` are built
    with nearest resampling after the data is written.
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    count, height, width = data.shape
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "transform": transform if transform is not None else utm_transform(),
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if colorinterp is not None and colorinterp[-1] == ColorInterp.alpha:
        profile["alpha"] = "UNASSOCIATED"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp is not None:
            dst.colorinterp = list(colorinterp)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
        for index, description in enumerate(descriptions or (), start=1):
            dst.set_band_description(index, description)
        if tags:
            dst.update_tags(**tags)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.nearest)
    return path


def constant(value: float, shape: tuple[int, int], *, bands: int = 3, dtype: str = "uint8") -> np.ndarray:
    """A ``(bands, h, w)`` array filled with ``value``."""
    return np.full((bands, *shape), value, dtype=dtype)


def ramp(shape: tuple[int, int], *, bands: int = 3, dtype: str = "uint16", start: int = 0) -> np.ndarray:
    """A ``(bands, h, w)`` array of ``start, start+1, ...`` in row-major order; band b adds ``b * 1000``."""
    h, w = shape
    base = np.arange(h * w, dtype=np.int64).reshape(h, w) + start
    return np.stack([base + b * 1000 for b in range(bands)]).astype(dtype)


def rgb_pair(tmp_path: Path, shape: tuple[int, int] = (40, 50)) -> tuple[Path, Path]:
    """Two co-registered uint8 RGB rasters on the same UTM grid: before = 50, after = 200."""
    before = write_raster(tmp_path / "before.tif", constant(50, shape), colorinterp=RGB)
    after = write_raster(tmp_path / "after.tif", constant(200, shape), colorinterp=RGB)
    return before, after
