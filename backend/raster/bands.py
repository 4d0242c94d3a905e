"""Band selection: which raster bands are red, green and blue.

:func:`pair_bands` picks the red, green and blue band of each raster of a pair. The radiometric
stretch that follows lives in :mod:`backend.raster.transform`, shared with the training loaders.
"""

from __future__ import annotations

from typing import Any

from rasterio.enums import ColorInterp

from backend.errors import InputError, RasterError, RasterMismatchError
from backend.raster.transform import (
    STRETCH_MODES,
    Stretch,
    StretchMode,
    check_stretch_args,
    choose_stretch,
    fixed_stretch,
    percentile_stretch,
)

__all__ = [
    "STRETCH_MODES",
    "Bands",
    "Stretch",
    "StretchMode",
    "alpha_bands",
    "check_stretch_args",
    "choose_stretch",
    "default_bands",
    "fixed_stretch",
    "pair_bands",
    "percentile_stretch",
]

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
