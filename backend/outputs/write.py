"""Write result rasters atomically: tiled, compressed GeoTIFFs that appear only when complete.

:class:`AtomicGeoTiff` writes ``<stem>.partial.tif`` next to the target and renames it over the target
only when its ``with`` block ends cleanly; on any error (cancel included) it deletes the partial
file, so a folder never holds a half-written result. Rows may arrive in any strip height: they are
buffered up to whole 256-row block rows, so each compressed block is encoded once and GDAL keeps at
most a few block rows in its cache: memory is ``O(width)``, never ``O(width * height)``.

Typical use, as the stitcher's sink::

    with probability_writer(out / "probability.tif", grid) as prob, mask_writer(out / "mask.tif", grid) as mask:
        def sink(row: int, p: np.ndarray, valid: np.ndarray) -> None:
            prob.write_rows(row, p, valid)  # encodes p to uint8 or float16
            mask.write_rows(row, to_mask(p, valid, threshold))
        ...
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from backend.errors import OutputError
from backend.outputs.files import ensure_writable_folder, partial_path
from backend.outputs.stitch import MASK_NODATA
from backend.params import ProbabilityDtype

_log = logging.getLogger(__name__)

BLOCK = 256
# GDAL keeps an internal mask's blocks in its cache until the file is closed (rasterio exposes no
# FlushCache), so a masked file is closed and reopened every this many rows to bound memory.
_REOPEN_ROWS = 4 * BLOCK


class GridLike(Protocol):
    """What the writers need from :class:`backend.raster.io.Grid`."""

    @property
    def crs(self) -> Any: ...  # noqa: D102

    @property
    def transform(self) -> Any: ...  # noqa: D102

    @property
    def width(self) -> int: ...  # noqa: D102

    @property
    def height(self) -> int: ...  # noqa: D102


def _remove(path: Path) -> None:
    """Delete ``path`` and any GDAL side-car of it, ignoring files that are already gone."""
    for candidate in (path, path.with_name(path.name + ".msk"), path.with_name(path.name + ".aux.xml")):
        candidate.unlink(missing_ok=True)


class AtomicGeoTiff:
    """A GeoTIFF written under ``<stem>.partial.tif`` and renamed to ``path`` on success.

    Args:
        path: Final file name.
        crs: CRS of the grid (anything rasterio accepts).
        transform: Affine transform of the grid.
        width: Columns.
        height: Rows.
        dtype: Pixel type as rasterio names it ("uint8", "float32", ...).
        nodata: Nodata value, or None.
        count: Number of bands.
        internal_mask: Keep a per-dataset validity mask inside the file (GDAL_TIFF_INTERNAL_MASK).
        predictor: TIFF predictor (1 none, 2 horizontal, 3 floating point); None picks 2 for integers
            and 3 for floats.
        options: Further GTiff creation options, e.g. ``{"nbits": 16}``.

    Raises:
        OutputError: When the folder or the file cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        crs: Any,
        transform: Any,
        width: int,
        height: int,
        dtype: str,
        nodata: float | None = None,
        count: int = 1,
        internal_mask: bool = False,
        predictor: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.width = width
        self.height = height
        self.internal_mask = internal_mask
        if predictor is None:
            predictor = 3 if np.dtype(dtype).kind == "f" else 2
        self._profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": count,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
            "compress": "deflate",
            "predictor": predictor,
            "bigtiff": "IF_SAFER",
            **(options or {}),
        }
        self._dataset: Any = None
        self._pending: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._pending_start = 0
        self._pending_rows = 0
        self._rows_since_reopen = 0

    def __enter__(self) -> AtomicGeoTiff:
        ensure_writable_folder(self.path.parent)
        try:
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                self._dataset = rasterio.open(self.partial, "w", **self._profile)
        except (OSError, RasterioError) as exc:
            _remove(self.partial)
            raise OutputError(f"Cannot write {self.partial}: {exc}. Choose another --out folder.") from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def write_rows(self, row_start: int, array: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Write ``array`` ((rows, width) or (count, rows, width)) from grid row ``row_start`` down.

        ``valid`` (rows, width) bool fills the internal mask (only with ``internal_mask=True``).
        Rows written in order are buffered to whole block rows; out-of-order rows are written directly.
        """
        if self._dataset is None:
            raise OutputError(f"{self.path} is not open for writing; use AtomicGeoTiff in a with block.")
        data = array[np.newaxis] if array.ndim == 2 else array
        if data.shape[-1] != self.width or row_start < 0 or row_start + data.shape[-2] > self.height:
            raise OutputError(
                f"Rows {row_start}..{row_start + data.shape[-2]} of width {data.shape[-1]} do not fit "
                f"{self.path.name} ({self.width}x{self.height})."
            )
        if valid is not None and not self.internal_mask:
            raise OutputError(f"{self.path.name} was opened without internal_mask; cannot store validity.")
        if row_start != self._pending_start + self._pending_rows:
            self._flush()
            self._pending_start = row_start
        self._pending.append((data, valid))
        self._pending_rows += data.shape[-2]
        end = self._pending_start + self._pending_rows
        if end % BLOCK == 0 or end == self.height:
            self._flush()
        elif self._pending_rows >= BLOCK:
            self._flush(upto=end - end % BLOCK)

    def _flush(self, upto: int | None = None) -> None:
        """Write buffered rows up to grid row ``upto`` (all when None); keep the rest buffered."""
        if not self._pending:
            return
        data = np.concatenate([d for d, _ in self._pending], axis=-2)
        masks = [v for _, v in self._pending]
        valid: np.ndarray | None = None
        if all(v is not None for v in masks):
            valid = np.concatenate([v for v in masks if v is not None], axis=0)
        cut = data.shape[-2] if upto is None else upto - self._pending_start
        window = Window(0, self._pending_start, self.width, cut)  # type: ignore[call-arg]
        try:
            self._dataset.write(data[:, :cut], window=window)
            if self.internal_mask:
                full = np.ones((cut, self.width), dtype=bool) if valid is None else valid[:cut]
                with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                    self._dataset.write_mask(full.astype(np.uint8) * 255, window=window)
            self._rows_since_reopen += cut
            if self.internal_mask and self._rows_since_reopen >= _REOPEN_ROWS:
                self._reopen()
        except (OSError, RasterioError) as exc:
            raise OutputError(
                f"Cannot write {self.path}: {exc}. Check free disk space or choose another --out."
            ) from exc
        rest = data.shape[-2] - cut
        self._pending = [] if rest == 0 else [(data[:, cut:].copy(), None if valid is None else valid[cut:].copy())]
        self._pending_start += cut
        self._pending_rows = rest

    def _reopen(self) -> None:
        """Close and reopen the file so GDAL writes out the mask blocks it otherwise caches until close."""
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            self._dataset.close()
            self._dataset = rasterio.open(self.partial, "r+", driver="GTiff")
        self._rows_since_reopen = 0

    def commit(self) -> None:
        """Flush, close and rename the partial file to the final name."""
        if self._dataset is None:
            return
        try:
            self._flush()
            with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
                self._dataset.close()
            self._dataset = None
            self.partial.replace(self.path)
        except (OSError, RasterioError) as exc:
            self.abort()
            raise OutputError(
                f"Cannot finish {self.path}: {exc}. Check free disk space or choose another --out."
            ) from exc
        _log.debug("wrote %s", self.path)

    def abort(self) -> None:
        """Close and delete the partial file; the final path is left untouched."""
        if self._dataset is not None:
            try:
                self._dataset.close()
            except Exception:  # the file is deleted anyway; the original error matters more
                _log.debug("closing %s after an error failed", self.partial, exc_info=True)
            self._dataset = None
        self._pending = []
        _remove(self.partial)


class ProbabilityTiff(AtomicGeoTiff):
    """probability.tif: uint8 ``round(p * 255)`` with an internal mask, or float16 with NaN nodata."""

    def __init__(self, path: str | os.PathLike[str], grid: GridLike, dtype: ProbabilityDtype = "uint8") -> None:
        if dtype == "uint8":
            super().__init__(
                path, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                dtype="uint8", internal_mask=True, predictor=2,
            )  # fmt: skip
        elif dtype == "float16":  # stored as 16-bit IEEE half floats (NBITS=16 on a Float32 band)
            super().__init__(
                path, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                dtype="float32", nodata=float("nan"), predictor=3, options={"nbits": 16},
            )  # fmt: skip
        else:
            raise OutputError(f"Probability dtype {dtype!r} is not supported; use 'uint8' or 'float16'.")
        self.encoding: ProbabilityDtype = dtype

    def __enter__(self) -> ProbabilityTiff:
        super().__enter__()
        return self

    def write_rows(self, row_start: int, array: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Encode and write probabilities in [0, 1] ``(rows, width)``; pixels where ``valid`` is False become nodata."""
        if valid is None:
            valid = np.ones(array.shape, dtype=bool)
        if self.encoding == "uint8":
            scaled = np.clip(array, 0.0, 1.0, dtype=np.float32)
            scaled *= 255.0
            encoded = np.rint(scaled, out=scaled).astype(np.uint8)
            encoded[~valid] = 0
            super().write_rows(row_start, encoded, valid)
        else:
            super().write_rows(row_start, np.where(valid, array, np.nan).astype(np.float32))


def probability_writer(
    path: str | os.PathLike[str], grid: GridLike, dtype: ProbabilityDtype = "uint8"
) -> ProbabilityTiff:
    """Return the atomic writer of probability.tif on ``grid`` (use it in a ``with`` block)."""
    return ProbabilityTiff(path, grid, dtype)


def mask_writer(path: str | os.PathLike[str], grid: GridLike) -> AtomicGeoTiff:
    """Return the atomic writer of mask.tif on ``grid``: uint8 1 change, 0 none, 255 nodata."""
    return AtomicGeoTiff(
        path, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
        dtype="uint8", nodata=MASK_NODATA, predictor=1,
    )  # fmt: skip
