"""One raster opened for reading: the checks on opening, the band window reads, the GDAL cache size.

:class:`RasterPair` (:mod:`backend.raster.io`) opens both dates with :func:`open_raster` and reads
them through one :class:`BandView` each; the vectorizer sizes its GDAL cache with
:func:`block_cache_bytes`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from backend.errors import RasterError

Bands = tuple[int, int, int]


class BandView:
    """One date's RGB bands seen on the grid: grid pixel (col, row) is dataset pixel (col + dc, row + dr)."""

    def __init__(self, dataset: Any, bands: Bands, col_shift: int, row_shift: int, alpha_band: int | None) -> None:
        self.dataset = dataset
        self.indexes = [*bands, alpha_band] if alpha_band is not None else list(bands)
        self.col_shift = col_shift
        self.row_shift = row_shift
        self.has_alpha = alpha_band is not None
        # Without nodata, masks or alpha, every pixel is valid: skip GDAL's mask reads.
        flags = [dataset.mask_flag_enums[i - 1] for i in self.indexes]
        self.all_valid = not self.has_alpha and all(f == [MaskFlags.all_valid] for f in flags)
        self.is_float = np.dtype(dataset.dtypes[bands[0] - 1]).kind == "f"

    def read(self, window: Window, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands ``(3, h, w)`` in the file's data type and validity ``(h, w)`` of a grid window."""
        ds = self.dataset
        col, row = int(window.col_off) + self.col_shift, int(window.row_off) + self.row_shift
        width, height = int(window.width), int(window.height)
        inside = col >= 0 and row >= 0 and col + width <= ds.width and row + height <= ds.height
        h, w = out_shape if out_shape is not None else (height, width)
        plain = inside and self.all_valid
        try:
            arr = ds.read(
                self.indexes,
                window=Window(col, row, width, height),
                out_shape=(len(self.indexes), h, w),
                masked=not plain,
                boundless=not inside,
                resampling=Resampling.nearest,
            )
        except RasterioError as err:
            raise RasterError(
                f"Reading {ds.name} failed at pixels col {col}, row {row}, {width}x{height} ({err}); "
                f"the file may be truncated or corrupt: check it with gdalinfo -checksum {ds.name}."
            ) from err
        raw = np.asarray(arr.data) if not plain else arr
        data = raw[:3]
        valid = np.ones((h, w), dtype=bool)
        if not plain:
            mask = np.broadcast_to(np.asarray(arr.mask, dtype=bool), raw.shape)
            valid = ~mask[:3].any(axis=0)
        if self.is_float:
            valid &= np.isfinite(data).all(axis=0)
        if self.has_alpha:
            valid &= raw[3] > 0
        return data, valid


def open_raster(path: Path, role: str) -> Any:
    """Open ``path`` with rasterio, refusing missing files, non-rasters and rasters without a CRS."""
    if not path.exists():
        raise RasterError(f"The {role} raster {path} does not exist; check the path.")
    try:
        src = rasterio.open(path)
    except RasterioIOError as err:
        raise RasterError(f"The {role} raster {path} is not a raster GDAL can read ({err}).") from err
    problem = None
    if src.crs is None:
        problem = f"has no coordinate reference system; assign one, e.g. with gdal_edit.py -a_srs EPSG:xxxx {path}"
    elif role == "before" and not (src.transform.b == src.transform.d == 0 and src.transform.e < 0 < src.transform.a):
        problem = "is not north-up (rotated or flipped); warp it first, e.g. with gdalwarp"
    if problem is not None:
        src.close()
        raise RasterError(f"The {role} raster {path} {problem}.")
    return src


def block_cache_bytes(paths: Sequence[str | os.PathLike[str]], rows: int, floor: int = 16 * 2**20) -> int:
    """A GDAL block cache for reading ``paths`` top to bottom, ``rows`` rows at a time.

    GDAL's default cache (5 % of RAM) keeps every block read, so memory would grow with the
    raster's area. Read in row order, a file needs only the rows in use plus a block row on
    either side. Files that cannot be opened count for nothing: their readers report them.
    """
    total = 0
    for path in paths:
        try:
            with rasterio.open(path) as src:
                block_rows = src.block_shapes[0][0] if src.block_shapes else 256
                total += (rows + 2 * block_rows) * src.width * src.count * np.dtype(src.dtypes[0]).itemsize
        except (RasterioError, OSError):
            continue
    return max(floor, total)
