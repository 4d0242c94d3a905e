"""Band selection and radiometric stretch: from raw raster bands to RGB in ``[0, 1]``.

:func:`pair_bands` picks the red, green and blue band of a raster; :class:`Stretch` maps raw
values linearly into ``[0, 1]``, either with a fixed scale per data type or with a per-band
percentile stretch measured on a decimated sample (:func:`percentile_stretch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rasterio.enums import ColorInterp

from backend.errors import InputError, RasterError, RasterMismatchError

StretchMode = Literal["auto", "percentile", "none"]
STRETCH_MODES: tuple[str, ...] = ("auto", "percentile", "none")
Bands = tuple[int, int, int]


def alpha_bands(src: Any) -> list[int]:
    """1-based indexes of the bands whose colour interpretation is alpha."""
    return [i for i, ci in enumerate(src.colorinterp, start=1) if ci == ColorInterp.alpha]


def _band_word(count: int) -> str:
    return f"{count} band" if count == 1 else f"{count} bands"


def default_bands(src: Any, path: str) -> tuple[Bands, bool]:
    """Red, green, blue by colour interpretation, else the first three non-alpha bands.

    Returns:
        The three 1-based band indexes and whether they came from the colour interpretation.

    Raises:
        RasterError: the raster has fewer than three non-alpha bands.
    """
    interp = list(src.colorinterp)
    if all(ci in interp for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        red, green, blue = (interp.index(ci) + 1 for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue))
        return (red, green, blue), True
    alpha = alpha_bands(src)
    data = [i for i in range(1, src.count + 1) if i not in alpha]
    if len(data) < 3:
        hint = "--bands 1,1,1 to use its one band as grey" if len(data) == 1 else "--bands with three band numbers"
        raise RasterError(
            f"{path} has {_band_word(len(data))} (alpha excluded) but change detection needs red, green, blue; "
            f"pass {hint}."
        )
    return (data[0], data[1], data[2]), False


def pair_bands(
    before: Any, before_path: str, after: Any, after_path: str, bands: tuple[int, ...] | None
) -> tuple[Bands, Bands]:
    """Return the 1-based red, green, blue band indexes of the before and the after raster.

    An explicit ``bands`` mapping is checked against both files and used for both. Without one,
    each raster's colour interpretation decides; when either falls back to "first three bands",
    both must have the same number of non-alpha bands so that the same indexes mean the same thing.

    Raises:
        InputError: ``bands`` is not three band numbers within both rasters' band counts.
        RasterError: a raster has fewer than three bands and no mapping was given.
        RasterMismatchError: the band counts differ and no mapping was given.
    """
    if bands is not None:
        if len(bands) != 3:
            raise InputError(
                f"bands={bands} must be three 1-based band numbers for red, green, blue, e.g. --bands 1,2,3."
            )
        for src, path in ((before, before_path), (after, after_path)):
            bad = [b for b in bands if not 1 <= b <= src.count]
            if bad:
                raise InputError(
                    f"bands={tuple(bands)} asks for band {bad[0]} but {path} has {_band_word(src.count)}; "
                    f"use numbers from 1 to {src.count}."
                )
        chosen = (bands[0], bands[1], bands[2])
        return chosen, chosen
    picked_a, by_interp_a = default_bands(before, before_path)
    picked_b, by_interp_b = default_bands(after, after_path)
    if by_interp_a and by_interp_b:
        return picked_a, picked_b
    data_a = before.count - len(alpha_bands(before))
    data_b = after.count - len(alpha_bands(after))
    if data_a != data_b:
        raise RasterMismatchError(
            f"{before_path} has {_band_word(data_a)} and {after_path} has {_band_word(data_b)}, so their band order "
            "cannot be matched; pass --bands R,G,B (e.g. --bands 1,2,3) to name the red, green and blue bands."
        )
    return picked_a, picked_b


@dataclass(frozen=True)
class Stretch:
    """Linear map ``(x - low) / (high - low)`` per band, clipped to ``[0, 1]``."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Stretch ``data`` ``(bands, h, w)`` into a new float32 array in ``[0, 1]`` (NaN stays NaN)."""
        out = np.empty(data.shape, dtype=np.float32)
        for band, (low, high) in enumerate(zip(self.low, self.high, strict=True)):
            np.subtract(data[band], np.float32(low), out=out[band], dtype=np.float32)
            out[band] *= np.float32(1.0 / (high - low))
        if not self._within(data.dtype):
            np.clip(out, 0.0, 1.0, out=out)
        return out

    def _within(self, dtype: np.dtype[Any]) -> bool:
        """True when every value of an unsigned ``dtype`` already maps into ``[0, 1]`` (no clip needed)."""
        if dtype.kind != "u":
            return False
        return all(lo <= 0 and hi >= np.iinfo(dtype).max for lo, hi in zip(self.low, self.high, strict=True))


def fixed_stretch(dtype: str, bands: int = 3) -> Stretch:
    """The data type's own scale: uint8 / 255, uint16 / 65535, other ints by their maximum, floats as is."""
    kind = np.dtype(dtype)
    high = float(np.iinfo(kind).max) if kind.kind in "iu" else 1.0
    return Stretch(low=(0.0,) * bands, high=(high,) * bands)


def percentile_stretch(
    sample: np.ndarray, valid: np.ndarray, dtype: str, percentiles: tuple[float, float] = (2.0, 98.0)
) -> Stretch:
    """Per-band stretch from ``percentiles`` of the valid pixels of a decimated ``sample``.

    A band whose low and high percentiles coincide (a constant band) keeps the fixed scale of
    ``dtype`` instead, so it is not blown up to black or white.
    """
    fixed = fixed_stretch(dtype, sample.shape[0])
    lows: list[float] = []
    highs: list[float] = []
    for band in range(sample.shape[0]):
        values = sample[band][valid]
        low, high = (float(v) for v in np.percentile(values, percentiles)) if values.size else (0.0, 0.0)
        if not high > low:
            low, high = fixed.low[band], fixed.high[band]
        lows.append(low)
        highs.append(high)
    return Stretch(low=tuple(lows), high=tuple(highs))


def choose_stretch(
    mode: str, dtype: str, sample: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]
) -> Stretch:
    """Stretch for one image: ``auto`` is fixed for uint8 and percentile otherwise."""
    if mode == "none" or (mode == "auto" and dtype == "uint8"):
        return fixed_stretch(dtype, sample.shape[0])
    return percentile_stretch(sample, valid, dtype, percentiles)


def check_stretch_args(stretch: str, percentiles: tuple[float, float]) -> None:
    """Refuse an unknown stretch mode or percentiles outside ``0 <= low < high <= 100``."""
    if stretch not in STRETCH_MODES:
        raise InputError(f"stretch={stretch!r} is not one of {', '.join(STRETCH_MODES)}.")
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise InputError(f"percentiles={percentiles} must satisfy 0 <= low < high <= 100, e.g. (2, 98).")
