"""Single-band files -> one multi-band raster on one grid (an OSCD city, a Sentinel-2 IMG_DATA folder, Landsat).

Band files are found by the band code at the end of their name (``..._B04.tif``, ``T31UDP_..._B8A.jp2``,
``LC09_..._SR_B4.TIF``). Every band is resampled (bilinear) onto one reference grid: by default the
finest band's own grid (Sentinel-2's 10 m bands), or any raster's grid (``like``), so that 20 and
60 m bands, or a second date on a slightly different grid, land on the same pixels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject

from backend.errors import InputError
from backend.outputs.files import atomic_output
from backend.raster.band_names import read_band_names

_log = logging.getLogger(__name__)

_BAND_FILE = re.compile(r"(?:^|[_.\-])((?:SR_)?B(?:8A|1[0-2]|0?[1-9]))\.(?:tif|tiff|jp2)$", re.IGNORECASE)
_COLOUR_BANDS = ("red", "green", "blue", "nir")


@dataclass(frozen=True)
class GridSpec:
    """A raster grid: CRS, transform and size."""

    crs: Any
    transform: Affine
    width: int
    height: int


def file_band_code(path: Path) -> str | None:
    """The band code a file's name ends with (``"B04"``, ``"B8A"``, ``"SR_B4"``), upper case, or None."""
    match = _BAND_FILE.search(path.name)
    return match.group(1).upper() if match else None


def _order(code: str) -> tuple[int, int]:
    number = code.split("B")[-1]
    return (8, 1) if number == "8A" else (int(number), 0)


def band_files(folder: Path) -> dict[str, Path]:
    """The band files of ``folder`` by code, in band order (B8A after B08).

    Raises:
        InputError: the folder is missing, holds no band files, or two files claim one band.
    """
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of band files (e.g. *_B02.tif, *_B03.tif, *_B04.tif).")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        code = file_band_code(path)
        if code is None:
            continue
        if code in found:
            raise InputError(f"{found[code].name} and {path.name} in {folder} are both band {code}; keep one.")
        found[code] = path
    if not found:
        raise InputError(f"{folder} holds no band files: their names must end with a band code, e.g. _B04.tif.")
    return dict(sorted(found.items(), key=lambda item: _order(item[0])))


def grid_of(path: Path) -> GridSpec:
    """The grid of the raster at ``path``."""
    with rasterio.open(path) as src:
        return GridSpec(src.crs, src.transform, src.width, src.height)


def finest_grid(files: Sequence[Path]) -> GridSpec:
    """The grid of the file with the smallest pixels (the first of them)."""
    grids = [grid_of(path) for path in files]
    return min(grids, key=lambda grid: abs(grid.transform.a * grid.transform.e))


def read_onto(path: Path, grid: GridSpec, resampling: Resampling = Resampling.bilinear) -> np.ndarray:
    """Band 1 of ``path`` resampled onto ``grid`` as float32 ``(height, width)``; outside the file is 0."""
    out = np.zeros((grid.height, grid.width), dtype=np.float32)
    with rasterio.open(path) as src:
        same = src.crs == grid.crs and src.transform == grid.transform and src.shape == (grid.height, grid.width)
        if same:
            data: np.ndarray = src.read(1).astype(np.float32)
            return data
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            dst_nodata=0,
            resampling=resampling,
        )
    return out


def describe_code(code: str, hints: str = "") -> str:
    """A band description a reader can match: ``"B04 red"`` where the code is a colour band, else the code."""
    name = read_band_names([code], hints).names[0]
    return f"{code} {name}" if name in _COLOUR_BANDS else code


def stack_bands(
    folder: Path, out: Path, bands: Sequence[str] | None = None, like: Path | None = None
) -> tuple[GridSpec, list[str]]:
    """Write the band files of ``folder`` as one GeoTIFF at ``out`` (written whole, then renamed).

    Args:
        folder: The folder of single-band files.
        out: The multi-band GeoTIFF to write.
        bands: Band codes to keep, in this order (``["B04", "B03", "B02", "B08"]``); None keeps all.
        like: A raster whose grid the bands are resampled onto; None takes the finest band's grid.

    Returns:
        The output grid and the band descriptions written.

    Raises:
        InputError: a missing folder or band, or an unreadable file.
    """
    files = band_files(folder)
    chosen = list(files) if bands is None else [code.upper() for code in bands]
    missing = [code for code in chosen if code not in files]
    if missing:
        raise InputError(f"{folder} has no band {', '.join(missing)}; it has {', '.join(files)}.")
    paths = [files[code] for code in chosen]
    grid = grid_of(like) if like is not None else finest_grid(paths)
    with rasterio.open(paths[0]) as first:
        dtype = first.dtypes[0]
    hints = " ".join(path.name for path in paths)
    descriptions = [describe_code(code, hints) for code in chosen]
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": len(paths),
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with atomic_output(out) as partial, rasterio.open(partial, "w", **profile) as dst:
        for index, (code, path) in enumerate(zip(chosen, paths, strict=True), start=1):
            data = read_onto(path, grid)
            if np.dtype(dtype).kind in "iu":
                info = np.iinfo(dtype)
                data = np.clip(np.rint(data), info.min, info.max)
            dst.write(data.astype(dtype), index)
            dst.set_band_description(index, descriptions[index - 1])
            _log.info("band %d: %s from %s", index, code, path.name)
    return grid, descriptions
