"""The input transform, one for the engine and the training loaders: raw bands -> model input.

Three steps, in this order, whoever reads the pixels:

1. **Band selection** (the caller): three raw bands ``(3, h, w)`` for red, green and blue.
2. **Stretch** into ``[0, 1]``: :func:`image_stretch` measures it once per *whole source image*
   (on a sample decimated to :data:`SAMPLE_SIDE`, over the pixels valid in both dates), never
   per crop or tile; ``auto`` is the fixed ``/ 255`` for uint8 and a 2-98 % percentile stretch
   for other types. :meth:`Stretch.apply` then maps any window of that image.
3. **Normalise** with the model card's mean and std: :func:`normalise`, on the model's device.

``backend.raster.io.RasterPair`` runs steps 1-2 through GDAL windows; the training datasets run them on
whole decoded images (:func:`unit_image`); both then hand ``[0, 1]`` images to :func:`normalise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from backend.errors import InputError
from backend.params import STRETCH_CHOICES
from backend.raster.radiometry import DEFAULT_WHITE, SENSOR_RULES, reflectance_bounds

StretchMode = Literal["auto", "percentile", "none", "sentinel-2", "landsat"]
STRETCH_MODES: tuple[str, ...] = STRETCH_CHOICES
SAMPLE_SIDE = 1024  # longest side of the decimated sample that measures a stretch
DEFAULT_PERCENTILES = (2.0, 98.0)


def sample_shape(height: int, width: int, max_side: int = SAMPLE_SIDE) -> tuple[int, int]:
    """Shape of a decimated read of a ``height x width`` area whose longest side is at most ``max_side``."""
    factor = max(1.0, max(height, width) / max_side)
    return max(1, round(height / factor)), max(1, round(width / factor))


def decimate(data: np.ndarray, max_side: int = SAMPLE_SIDE) -> np.ndarray:
    """Nearest-neighbour sample of ``data`` ``(..., h, w)`` at :func:`sample_shape`, as GDAL's decimated read picks."""
    height, width = data.shape[-2:]
    out_h, out_w = sample_shape(height, width, max_side)
    if (out_h, out_w) == (height, width):
        return data
    rows = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(np.int64), width - 1)
    return data[..., rows[:, None], cols[None, :]]


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


def reflectance_stretch(rule: str, white: float, bands: int = 3, offset: float = 0.0) -> Stretch:
    """The sensor ``rule``'s map DN -> ``reflectance / white`` over ``bands`` bands (:mod:`.radiometry`)."""
    low, high = reflectance_bounds(rule, white, offset)
    return Stretch(low=(low,) * bands, high=(high,) * bands)


def choose_stretch(
    mode: str,
    dtype: str,
    sample: np.ndarray,
    valid: np.ndarray,
    percentiles: tuple[float, float],
    white: float = DEFAULT_WHITE,
    offset: float = 0.0,
) -> Stretch:
    """Stretch for one image: ``auto`` is fixed for uint8 and percentile otherwise; sensor modes map reflectance."""
    if mode in SENSOR_RULES:
        return reflectance_stretch(mode, white, sample.shape[0], offset)
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


def image_stretch(
    raw: np.ndarray,
    valid: np.ndarray | None = None,
    mode: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    white: float = DEFAULT_WHITE,
) -> Stretch:
    """The stretch of one whole image ``(bands, h, w)``, measured on its decimated sample.

    Args:
        raw: The image's raw bands, whole (not a crop).
        valid: Pixels that count (True where both dates have data); None counts every pixel.
        mode: ``auto``, ``percentile``, ``none``, ``sentinel-2`` or ``landsat``.
        percentiles: Low and high percentiles of the percentile stretch.
        white: The reflectance that maps to 1.0 under a sensor mode.
    """
    check_stretch_args(mode, percentiles)
    sample = decimate(raw)
    mask = np.ones(sample.shape[-2:], dtype=bool) if valid is None else decimate(valid)
    return choose_stretch(mode, str(raw.dtype), sample, mask, percentiles, white)


def unit_image(
    raw: np.ndarray,
    valid: np.ndarray | None = None,
    mode: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    white: float = DEFAULT_WHITE,
) -> np.ndarray:
    """A whole image's raw bands ``(3, h, w)`` -> float32 in ``[0, 1]``, invalid pixels 0 (as the engine reads them)."""
    out = image_stretch(raw, valid, mode, percentiles, white).apply(raw)
    if valid is not None and not valid.all():
        out[:, ~valid] = 0.0
    return out


def normalise(image: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """``(image - mean) / std`` per band for a ``(B, 3, h, w)`` torch tensor (or numpy array) in ``[0, 1]``."""
    if isinstance(image, np.ndarray):
        m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (image - m) / s
    m = image.new_tensor(list(mean)).view(1, -1, 1, 1)
    s = image.new_tensor(list(std)).view(1, -1, 1, 1)
    return (image - m) / s
