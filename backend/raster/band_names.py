"""What each band of a raster is, read from its band descriptions: colour words and sensor band codes.

GDAL reports a band's description (``"B04 red"``, ``"SR_B4"``, ``"B8A"``, ``"red"``...). Each is
turned into a canonical name (``red``, ``green``, ``blue``, ``nir``...) by, in this order:

1. a colour word in the description (``red``, ``green``, ``blue``, ``nir``/``near infrared``, ...);
2. a band code, read by the sensor's numbering, the sensor being decided for the whole raster:
   Sentinel-2 (B01-B12 and B8A, with or without the zero), Landsat 8/9 OLI (B1-B11, ``SR_B*`` of
   Collection 2) or Landsat 4-7 TM/ETM+ (B1-B7). Landsat 4-7 is taken only when the file's name
   or metadata says so (``LT04``, ``LT05``, ``LE07``, ``LANDSAT_5``...), because Sentinel-2 and
   OLI agree on B1-B4 (coastal, blue, green, red) and TM does not (B1 blue, B2 green, B3 red).

Nothing here opens files: callers pass the descriptions and any metadata text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Centre wavelengths (nm) of the canonical bands, Sentinel-2A's where Sentinel-2 has the band.
WAVELENGTH_NM: dict[str, int] = {
    "coastal": 443,
    "blue": 490,
    "green": 560,
    "red": 665,
    "rededge1": 705,
    "rededge2": 740,
    "rededge3": 783,
    "nir": 842,
    "nir08": 865,
    "watervapour": 945,
    "cirrus": 1375,
    "swir1": 1610,
    "swir2": 2190,
    "pan": 590,
    "thermal": 10900,
}

SENTINEL_2 = "Sentinel-2"
LANDSAT_OLI = "Landsat 8/9 OLI"
LANDSAT_TM = "Landsat 4-7 TM/ETM+"

_CODES: dict[str, dict[str, str]] = {
    SENTINEL_2: {
        "1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "rededge1", "6": "rededge2",
        "7": "rededge3", "8": "nir", "8a": "nir08", "9": "watervapour", "10": "cirrus", "11": "swir1",
        "12": "swir2",
    },
    LANDSAT_OLI: {
        "1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "nir", "6": "swir1", "7": "swir2",
        "8": "pan", "9": "cirrus", "10": "thermal", "11": "thermal",
    },
    LANDSAT_TM: {
        "1": "blue", "2": "green", "3": "red", "4": "nir", "5": "swir1", "6": "thermal", "7": "swir2", "8": "pan",
    },
}  # fmt: skip

# Colour words, longest first so that "near infrared" is not read as "red".
_WORDS: tuple[tuple[str, str], ...] = (
    ("near infrared", "nir"),
    ("near-infrared", "nir"),
    ("red edge", "rededge1"),
    ("rededge", "rededge1"),
    ("coastal", "coastal"),
    ("aerosol", "coastal"),
    ("cirrus", "cirrus"),
    ("swir1", "swir1"),
    ("swir2", "swir2"),
    ("swir 1", "swir1"),
    ("swir 2", "swir2"),
    ("nir", "nir"),
    ("red", "red"),
    ("green", "green"),
    ("blue", "blue"),
)
_CODE = re.compile(r"(?:^|[^a-z0-9])(sr_)?b0*(8a|1[0-2]|[1-9])(?![0-9a-z])")
_TM_HINT = re.compile(r"\b(lt0?4|lt0?5|le0?7)|landsat[_ -]?[457]\b|\b(tm|etm\+?)\b")
_OLI_HINT = re.compile(r"\b(lc0?8|lc0?9)|landsat[_ -]?[89]\b|\boli\b")
_S2_HINT = re.compile(r"sentinel[-_ ]?2|\bs2[ab]?\b|msil[12]c")


@dataclass(frozen=True)
class BandReading:
    """The canonical names of a raster's bands and how they were read.

    Attributes:
        names: One canonical name per band (1-based band i is ``names[i - 1]``), None where unknown.
        sensor: The band numbering used for codes, or "" when no code was read.
        source: Per band, what the name came from (``"colour word in 'B04 red'"``...).
    """

    names: tuple[str | None, ...]
    sensor: str
    source: tuple[str, ...]

    def index(self, name: str) -> int | None:
        """The 1-based band holding ``name``, or None (the first, when several do)."""
        return self.names.index(name) + 1 if name in self.names else None


def _colour_word(text: str) -> str | None:
    for word, name in _WORDS:
        if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z0-9])", text):
            return name
    return None


def band_code(text: str) -> str | None:
    """The band code in ``text``: ``"4"`` for ``B04``, ``B4`` or ``SR_B4``; ``"8a"`` for ``B8A``."""
    match = _CODE.search(text.lower())
    return None if match is None else match.group(2)


def decide_sensor(descriptions: Sequence[str], hints: str = "") -> str:
    """The band numbering for the raster's codes: from metadata or file-name hints, else from the codes."""
    text = hints.lower()
    if _TM_HINT.search(text):
        return LANDSAT_TM
    if _OLI_HINT.search(text):
        return LANDSAT_OLI
    if _S2_HINT.search(text):
        return SENTINEL_2
    lowered = [d.lower() for d in descriptions]
    if any("sr_b" in d for d in lowered):
        return LANDSAT_OLI
    return SENTINEL_2


def read_band_names(descriptions: Sequence[str | None], hints: str = "") -> BandReading:
    """Canonical names of the bands described by ``descriptions`` (see the module's rules).

    Args:
        descriptions: GDAL band descriptions, one per band ("" or None where a band has none).
        hints: Text that may name the sensor: the file name, its metadata values.
    """
    texts = [(d or "").strip().lower() for d in descriptions]
    sensor = decide_sensor(texts, hints) if any(band_code(t) for t in texts) else ""
    names: list[str | None] = []
    sources: list[str] = []
    for raw, text in zip(descriptions, texts, strict=True):
        word = _colour_word(text)
        code = band_code(text)
        if word is not None:
            names.append(word)
            sources.append(f"colour word in {raw!r}")
        elif code is not None and code in _CODES[sensor]:
            names.append(_CODES[sensor][code])
            sources.append(f"{sensor} code in {raw!r}")
        else:
            names.append(None)
            sources.append(f"no band name in {raw!r}" if raw else "no description")
    return BandReading(tuple(names), sensor, tuple(sources))


def canonical(token: str) -> str | None:
    """The canonical band for a colour word typed by a user (``"red"``, ``"NIR"``), else None."""
    text = token.strip().lower()
    if text in WAVELENGTH_NM:
        return text
    return _colour_word(text)


def describe_reading(reading: BandReading, picked: Sequence[int]) -> str:
    """``"band 3 'B04' (red), band 2 'B03' (green)..."`` for the picked 1-based bands."""
    parts = []
    for band in picked:
        name = reading.names[band - 1] or "?"
        parts.append(f"band {band} ({name}: {reading.source[band - 1]})")
    return ", ".join(parts)
