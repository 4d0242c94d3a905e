"""Sensor rules: a satellite's digital numbers -> surface or top-of-atmosphere reflectance -> model input.

Formulas (docs/radiometry.md gives the sources):

- Sentinel-2 L1C / L2A: ``reflectance = (DN + offset) / 10000``; ``offset`` is 0 before processing
  baseline 04.00 (January 2022) and -1000 from it on (``RADIO_ADD_OFFSET`` in L1C metadata,
  ``BOA_ADD_OFFSET`` in L2A). The offset is read from the raster's metadata when it is there, else
  taken from the user (``--s2-offset``), else 0.
- Landsat Collection 2 Level-2 surface reflectance: ``reflectance = DN * 0.0000275 - 0.2``.

A model whose card gives a ``white`` reflectance sees ``clip(reflectance / white, 0, 1)``: the
whole rule is one linear map per band, ``(DN - low) / (high - low)``, so :func:`reflectance_bounds`
gives ``low`` and ``high`` and :mod:`backend.raster.transform` applies it like any other stretch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from backend.errors import InputError

SENTINEL_2 = "sentinel-2"
LANDSAT = "landsat"
SENSOR_RULES = (SENTINEL_2, LANDSAT)
S2_SCALE = 10_000.0
S2_BASELINE_OFFSET = -1000.0  # processing baseline 04.00 and later
LANDSAT_GAIN = 0.0000275
LANDSAT_BIAS = -0.2
_OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
_BASELINE_KEYS = ("PROCESSING_BASELINE",)


DEFAULT_WHITE = 0.3  # when neither the card nor the user gives one: bright urban surfaces stay below 1


def reflectance_bounds(rule: str, white: float, offset: float = 0.0) -> tuple[float, float]:
    """``(low, high)`` of the linear map DN -> ``reflectance / white`` of ``rule``.

    Args:
        rule: ``sentinel-2`` or ``landsat``.
        white: The reflectance that maps to 1.0 (the card's ``white``), in (0, 2].
        offset: Sentinel-2's additive DN offset (0 or -1000).

    Raises:
        InputError: an unknown rule or a ``white`` out of range.
    """
    if not 0.0 < white <= 2.0:
        raise InputError(f"white={white} must be a reflectance in (0, 2], e.g. 0.3.")
    if rule == SENTINEL_2:
        # (DN + offset) / 10000 / white  ->  low = -offset, high = -offset + 10000 * white
        low = -offset
        high = low + S2_SCALE * white
    elif rule == LANDSAT:
        # (DN * gain + bias) / white  ->  low = -bias / gain, high = low + white / gain
        low = -LANDSAT_BIAS / LANDSAT_GAIN
        high = low + white / LANDSAT_GAIN
    else:
        raise InputError(f"sensor rule {rule!r} is not one of {', '.join(SENSOR_RULES)}.")
    return low, high


def sentinel2_offset(tags: Mapping[str, str]) -> float | None:
    """The DN offset the metadata states (``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET``, or the baseline), else None."""
    upper = {key.upper(): value for key, value in tags.items()}
    for key in _OFFSET_KEYS:
        for name, value in upper.items():
            if name == key or name.startswith(key + "_"):
                try:
                    return float(value)
                except ValueError:
                    continue
    for key in _BASELINE_KEYS:
        match = re.match(r"\s*0*(\d+)\.(\d+)", upper.get(key) or "")
        if match:
            return S2_BASELINE_OFFSET if (int(match.group(1)), int(match.group(2))) >= (4, 0) else 0.0
    return None


def effective_mode(mode: str, dtype: str, input_stretch: Mapping[str, object]) -> str:
    """The stretch a raster of ``dtype`` gets under ``mode`` for a model whose card says ``input_stretch``.

    ``auto`` becomes the card's sensor rule for raw bands (any type but uint8: 8-bit rasters are
    taken as pictures, ``/ 255``, whatever the sensor), else stays ``auto``; other modes are kept.
    """
    rule = str(input_stretch.get("rule", "auto"))
    if mode == "auto" and dtype != "uint8" and rule in SENSOR_RULES:
        return rule
    return mode


def describe_scaling(mode: str, dtype: str, white: float, offset: float) -> str:
    """One line for the log: how a raster's values become the model's input."""
    if mode == SENTINEL_2:
        dn = f"(DN {offset:+g})" if offset else "DN"
        return f"Sentinel-2 reflectance {dn} / 10000, divided by white {white:g}"
    if mode == LANDSAT:
        return f"Landsat Collection 2 surface reflectance DN * 0.0000275 - 0.2, divided by white {white:g}"
    if mode == "none" or (mode == "auto" and dtype == "uint8"):
        return f"{dtype} by its own range (8-bit rasters are taken as pictures: / 255)"
    why = " (the model's card has no sensor rule)" if mode == "auto" else ""
    return f"{dtype}: 2-98 % percentile stretch per image{why}"
