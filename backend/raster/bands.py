"""Band selection: which raster bands feed the model's bands (red, green and blue for most models).

:func:`pair_bands` picks them in each raster of a pair: by ``--bands`` (numbers or names), else by
the band names that GDAL reads (:mod:`backend.raster.band_names`), else by colour interpretation,
else the first three bands. The radiometric
stretch that follows lives in :mod:`backend.raster.transform`, shared with the training loaders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rasterio.enums import ColorInterp

from backend.errors import InputError, RasterError, RasterMismatchError
from backend.raster.band_names import BandReading, band_code, canonical, describe_reading, read_band_names
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
    "RGB",
    "STRETCH_MODES",
    "BandSpec",
    "Bands",
    "Stretch",
    "StretchMode",
    "alpha_bands",
    "band_listing",
    "band_reading",
    "check_stretch_args",
    "choose_stretch",
    "default_bands",
    "fixed_stretch",
    "pair_bands",
    "percentile_stretch",
    "resolve_band",
]

Bands = tuple[int, int, int]
_log = logging.getLogger(__name__)


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


BandSpec = tuple[int | str, ...]
RGB = ("red", "green", "blue")


def band_reading(src: Any, path: str) -> BandReading:
    """The canonical names of ``src``'s bands from their descriptions (file name and metadata as sensor hints)."""
    tags = " ".join(str(value) for value in src.tags().values())
    return read_band_names(list(src.descriptions), f"{Path(path).name} {tags}")


def band_listing(src: Any) -> str:
    """``"1 'B04 red', 2 'B03 green', 3 (no description)"``: a raster's bands as a user can name them."""
    return ", ".join(
        f"{i} {desc!r}" if desc else f"{i} (no description)" for i, desc in enumerate(src.descriptions, start=1)
    )


def resolve_band(token: int | str, src: Any, path: str, reading: BandReading, spec: BandSpec | None = None) -> int:
    """The 1-based band that ``token`` names in ``src``: a number, a description, a band code or a colour word.

    Raises:
        InputError: no band of ``src`` answers to ``token``; the message lists its bands.
    """
    if isinstance(token, int):
        if not 1 <= token <= src.count:
            raise InputError(
                f"bands={spec or (token,)} asks for band {token} but {path} has {_band_word(src.count)}; "
                f"use numbers from 1 to {src.count}."
            )
        return token
    text = token.strip().lower()
    descriptions = [(d or "").strip().lower() for d in src.descriptions]
    if text in descriptions:
        return descriptions.index(text) + 1
    code = band_code(text)
    if code is not None and text.replace("_", "").startswith(("b", "srb")):
        for index, description in enumerate(descriptions, start=1):
            if band_code(description) == code:
                return index
    name = canonical(text)
    found = reading.index(name) if name is not None else None
    if found is not None:
        return found
    raise InputError(
        f"bands={spec or (token,)}: band {token!r} is not in {path}, whose bands are {band_listing(src)}; "
        "name bands by number, by these descriptions, or by colour (red, green, blue, nir)."
    )


def pair_bands(
    before: Any,
    before_path: str,
    after: Any,
    after_path: str,
    bands: BandSpec | None,
    model_bands: tuple[str, ...] = RGB,
) -> tuple[Bands, Bands]:
    """Return the 1-based band indexes of the before and the after raster that feed the model's bands.

    An explicit ``bands`` (numbers or names) is resolved in each file. Without one: the model's
    band names (``model_bands``, from its card) matched to the rasters' band descriptions; else
    red, green, blue by colour interpretation; else, when the model takes RGB, the first three
    bands, with the same number of non-alpha bands in both files so that the same indexes mean
    the same thing. What was chosen, and from what, is logged.

    Raises:
        InputError: ``bands`` is not three bands of both rasters, or the model takes other bands
            than RGB and the rasters' descriptions do not name them.
        RasterError: a raster has fewer than three bands and no mapping was given.
        RasterMismatchError: the band counts differ and no mapping was given.
    """
    reading_a, reading_b = band_reading(before, before_path), band_reading(after, after_path)
    if bands is not None:
        if len(bands) != 3:
            raise InputError(
                f"bands={bands} must name three bands for {', '.join(model_bands)}, "
                "e.g. --bands 1,2,3 or --bands B04,B03,B02."
            )
        chosen_a = _three([resolve_band(t, before, before_path, reading_a, bands) for t in bands])
        chosen_b = _three([resolve_band(t, after, after_path, reading_b, bands) for t in bands])
        _log.info("bands from --bands %s: before %s, after %s", ",".join(map(str, bands)), chosen_a, chosen_b)
        return chosen_a, chosen_b
    by_name_a = [reading_a.index(name) for name in model_bands]
    by_name_b = [reading_b.index(name) for name in model_bands]
    if None not in by_name_a and None not in by_name_b:
        picked_a, picked_b = _three(by_name_a), _three(by_name_b)
        for label, reading, picked in (("before", reading_a, picked_a), ("after", reading_b, picked_b)):
            _log.info("bands of the %s raster by name: %s", label, describe_reading(reading, picked))
        return picked_a, picked_b
    if tuple(model_bands) != RGB:
        raise InputError(
            f"the model expects the bands {', '.join(model_bands)} and the rasters' band descriptions do not name "
            f"them ({before_path}: {band_listing(before)}); name the bands that hold them with --bands, e.g. "
            "--bands 4,3,2."
        )
    picked_a, by_interp_a = default_bands(before, before_path)
    picked_b, by_interp_b = default_bands(after, after_path)
    if by_interp_a and by_interp_b:
        _log.info(
            "bands by colour interpretation: before %s, after %s (no band names for red, green, blue)",
            picked_a,
            picked_b,
        )
        return picked_a, picked_b
    data_a = before.count - len(alpha_bands(before))
    data_b = after.count - len(alpha_bands(after))
    if data_a != data_b:
        raise RasterMismatchError(
            f"{before_path} has {_band_word(data_a)} and {after_path} has {_band_word(data_b)}, so their band order "
            "cannot be matched; pass --bands R,G,B (e.g. --bands 1,2,3) to name the red, green and blue bands."
        )
    _log.info(
        "bands: the first three, before %s, after %s: neither band names nor colour interpretation say which are "
        "red, green and blue; pass --bands if they are not",
        picked_a,
        picked_b,
    )
    return picked_a, picked_b


def _three(indexes: list[int | None]) -> Bands:
    first, second, third = (int(i) for i in indexes if i is not None)
    return first, second, third
