"""Open a before/after raster pair and read aligned, stretched RGB windows from it.

:class:`RasterPair` validates both rasters at open (before any output exists), works out the
processing :class:`Grid` (a window of the before raster's pixel grid covering the overlap of
both rasters, or a user extent), aligns the after raster onto that grid with a bilinear
``WarpedVRT`` when the two grids differ, and measures each image's stretch from a decimated
read. :meth:`RasterPair.read` then returns float32 RGB in ``[0, 1]`` plus a validity mask for
any window of the grid, reaching past its edges if asked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from backend.errors import InputError, RasterError
from backend.raster.bands import (
    RGB,
    BandSpec,
    Stretch,
    StretchMode,
    alpha_bands,
    check_stretch_args,
    choose_stretch,
    pair_bands,
)
from backend.raster.dataset import BandView, block_cache_bytes, open_raster
from backend.raster.grid import Extent, Grid, fmt_box, grid_window, integer_shift
from backend.raster.pixel_size import PixelSize, pixel_size_m
from backend.raster.radiometry import DEFAULT_WHITE, describe_scaling, effective_mode, sentinel2_offset
from backend.raster.transform import SAMPLE_SIDE, sample_shape

__all__ = ["Grid", "RasterPair", "block_cache_bytes", "sample_shape"]

logger = logging.getLogger(__name__)


class RasterPair:
    """The two dates of a change detection, open, validated and aligned on one :class:`Grid`.

    Args:
        before: Raster of the earlier date; its CRS and pixel grid define the output's.
        after: Raster of the later date; aligned onto the grid (bilinear) when its CRS or grid differ.
        extent: (xmin, ymin, xmax, ymax) in the before raster's CRS; None uses the overlap.
        bands: The bands that feed the model, by 1-based number or by name (``"B04"``, ``"red"``), the
            same for both rasters; None matches ``model_bands`` to the band descriptions, else RGB by
            colour interpretation, else the first three non-alpha bands (:func:`pair_bands`).
        stretch: "auto" (uint8 / 255; raw bands by the card's sensor rule, else a percentile stretch),
            "percentile", "none", "sentinel-2" or "landsat" (:mod:`backend.raster.radiometry`).
        percentiles: Low and high percentiles of the percentile stretch.
        model_bands: The model's input bands by name (its card's ``bands``).
        input_stretch: The card's ``input_stretch`` (sensor rule and white reflectance), {} for none.
        s2_offset: Sentinel-2's DN offset (0 or -1000) when the rasters' metadata does not state it.

    Raises:
        RasterError: a raster is missing, unreadable, has no CRS, or the overlap holds no valid pixels.
        RasterMismatchError: the rasters do not overlap or their bands cannot be matched.
        InputError: the extent, bands or stretch options are invalid.

    Datasets are opened once here and closed by :meth:`close` (or leaving the ``with`` block).
    GDAL datasets are not thread-safe: :meth:`read` may be called from any one thread at a time
    (e.g. predict's prefetch thread); a lock serialises concurrent calls.
    """

    def __init__(
        self,
        before: str | Path,
        after: str | Path,
        *,
        extent: Extent | None = None,
        bands: BandSpec | None = None,
        stretch: StretchMode = "auto",
        percentiles: tuple[float, float] = (2.0, 98.0),
        model_bands: Sequence[str] = RGB,
        input_stretch: Mapping[str, Any] | None = None,
        s2_offset: float | None = None,
    ) -> None:
        check_stretch_args(stretch, percentiles)
        self._model_bands = tuple(model_bands)
        self._input_stretch = dict(input_stretch or {})
        self._s2_offset = s2_offset
        self.before_path = Path(before)
        self.after_path = Path(after)
        self._lock = threading.Lock()
        self._stack = ExitStack()
        try:
            self._open(extent, bands, stretch, percentiles)
        except BaseException:
            self._stack.close()
            raise

    def _open(self, extent: Extent | None, bands: BandSpec | None, mode: str, pct: tuple[float, float]) -> None:
        src_a = self._stack.enter_context(open_raster(self.before_path, "before"))
        src_b = self._stack.enter_context(open_raster(self.after_path, "after"))
        self.bands_before, self.bands_after = pair_bands(
            src_a, str(self.before_path), src_b, str(self.after_path), bands, self._model_bands
        )
        self.window = grid_window(src_a, src_b, self.before_path, self.after_path, extent)
        self.grid = Grid(
            src_a.crs, src_a.window_transform(self.window), int(self.window.width), int(self.window.height)
        )
        col_off, row_off = int(self.window.col_off), int(self.window.row_off)
        self._view_a = BandView(src_a, self.bands_before, col_off, row_off, None)
        self._view_b = self._align_after(src_b)
        self.pixel_size_m: PixelSize | None = pixel_size_m(
            self.grid.crs, self.grid.transform, self.grid.width, self.grid.height
        )
        self.stretch_before, self.stretch_after = self._measure(src_a, src_b, mode, pct)
        logger.info(
            "Raster pair %s / %s: grid %dx%d at %s in %s",
            self.before_path.name,
            self.after_path.name,
            self.grid.width,
            self.grid.height,
            self.grid.bounds,
            self.grid.crs,
        )

    def _align_after(self, src_b: Any) -> BandView:
        """Read the after raster directly when it shares the grid up to whole pixels, else through a WarpedVRT."""
        grid = self.grid
        shift = integer_shift(grid.transform, src_b.transform) if src_b.crs == grid.crs else None
        if shift is not None:
            return BandView(src_b, self.bands_after, shift[0], shift[1], None)
        own_alpha = bool(alpha_bands(src_b))
        vrt = self._stack.enter_context(
            WarpedVRT(
                src_b,
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling.bilinear,
                add_alpha=not own_alpha,
            )
        )
        logger.info("Aligning %s onto the before raster's grid (bilinear)", self.after_path.name)
        # Without an alpha band of its own the VRT gets one, so pixels outside the after raster read as invalid.
        return BandView(vrt, self.bands_after, 0, 0, None if own_alpha else vrt.count)

    def _measure(self, src_a: Any, src_b: Any, mode: str, pct: tuple[float, float]) -> tuple[Stretch, Stretch]:
        """Check the overlap has data and measure both stretches from one decimated read of each date."""
        (data_a, valid_a), (data_b, valid_b) = self._decimated(SAMPLE_SIDE)
        both = valid_a & valid_b  # each date is measured where both have data: the same ground
        if not both.any():
            raise RasterError(
                f"{self.before_path} and {self.after_path}: the overlap holds no valid pixels in both dates "
                f"(extent {fmt_box(self.grid.bounds)}); check their nodata values or choose another extent."
            )
        white = float(self._input_stretch.get("white", DEFAULT_WHITE))
        stretches = []
        for label, src, bands, data in (
            ("before", src_a, self.bands_before, data_a),
            ("after", src_b, self.bands_after, data_b),
        ):
            dtype = src.dtypes[bands[0] - 1]
            effective = effective_mode(mode, dtype, self._input_stretch)
            offset = self._offset(src, bands) if effective == "sentinel-2" else 0.0
            logger.info("input of the %s raster: %s", label, describe_scaling(effective, dtype, white, offset))
            stretches.append(choose_stretch(effective, dtype, data, both, pct, white, offset))
        return stretches[0], stretches[1]

    def _offset(self, src: Any, bands: Sequence[int]) -> float:
        """Sentinel-2's DN offset: from the raster's metadata, else the option, else 0 (before baseline 04.00)."""
        tags = dict(src.tags())
        for band in bands:
            tags.update(src.tags(band))
        stated = sentinel2_offset(tags)
        if stated is not None:
            logger.info("Sentinel-2 DN offset %g from %s's metadata", stated, Path(src.name).name)
            return stated
        return self._s2_offset if self._s2_offset is not None else 0.0

    def _decimated(self, max_side: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Raw bands and validity of the whole grid for both dates, longest side ``max_side`` (uses overviews)."""
        full = Window(0, 0, self.grid.width, self.grid.height)
        shape = sample_shape(self.grid.height, self.grid.width, max_side)
        with self._lock:
            return self._view_a.read(full, shape), self._view_b.read(full, shape)

    def read_overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole grid, decimated so its longest side is at most ``max_side``, as :meth:`read` returns it."""
        (raw_a, ok_a), (raw_b, ok_b) = self._decimated(max_side)
        ok = ok_a & ok_b
        image_a = np.where(ok, self.stretch_before.apply(raw_a), np.float32(0.0))
        image_b = np.where(ok, self.stretch_after.apply(raw_b), np.float32(0.0))
        return image_a, image_b, ok

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read a window of the grid from both dates.

        Args:
            window: Whole-pixel window in grid pixels; it may reach past the grid's edges.

        Returns:
            ``(image_a, image_b, valid)``: float32 ``(3, h, w)`` in ``[0, 1]`` for each date and bool
            ``(h, w)``, True where both dates hold finite, non-nodata values. Invalid pixels are 0.
        """
        col0, row0, width, height = (int(v) for v in (window.col_off, window.row_off, window.width, window.height))
        if (col0, row0, width, height) != (window.col_off, window.row_off, window.width, window.height):
            raise InputError(f"window {window} must have whole-pixel offsets and sizes.")
        if width < 1 or height < 1:
            raise InputError(f"window {window} is empty; width and height must be at least 1.")
        image_a = np.zeros((3, height, width), dtype=np.float32)
        image_b = np.zeros((3, height, width), dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        c0, r0 = max(col0, 0), max(row0, 0)
        c1, r1 = min(col0 + width, self.grid.width), min(row0 + height, self.grid.height)
        if c1 <= c0 or r1 <= r0:
            return image_a, image_b, valid
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        with self._lock:
            raw_a, ok_a = self._view_a.read(inner)
            raw_b, ok_b = self._view_b.read(inner)
        ok = ok_a & ok_b
        rows, cols = slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0)
        image_a[:, rows, cols] = self.stretch_before.apply(raw_a)
        image_b[:, rows, cols] = self.stretch_after.apply(raw_b)
        valid[rows, cols] = ok
        if not valid.all():
            image_a[:, ~valid] = 0.0
            image_b[:, ~valid] = 0.0
        return image_a, image_b, valid

    def close(self) -> None:
        """Close both datasets (and the alignment VRT)."""
        self._stack.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
