"""Band descriptions -> canonical band names: colour words, Sentinel-2, Landsat 8/9 and Landsat 4-7 codes."""

from __future__ import annotations

import pytest

from backend.raster.band_names import (
    LANDSAT_OLI,
    LANDSAT_TM,
    SENTINEL_2,
    canonical,
    read_band_names,
)


@pytest.mark.parametrize(
    ("descriptions", "hints", "names", "sensor"),
    [
        (["B04 red", "B03 green", "B02 blue", "B08 nir"], "", ("red", "green", "blue", "nir"), SENTINEL_2),
        (["B02", "B03", "B04", "B08"], "", ("blue", "green", "red", "nir"), SENTINEL_2),
        (["B2", "B3", "B4", "B8", "B8A", "B11"], "", ("blue", "green", "red", "nir", "nir08", "swir1"), SENTINEL_2),
        (["SR_B2", "SR_B3", "SR_B4", "SR_B5"], "", ("blue", "green", "red", "nir"), LANDSAT_OLI),
        (["B2", "B3", "B4", "B5"], "LC09_L2SP_196025_20230601", ("blue", "green", "red", "nir"), LANDSAT_OLI),
        (
            ["SR_B1", "SR_B2", "SR_B3", "SR_B4"],
            "LE07_L2SP_196025_20010525",
            ("blue", "green", "red", "nir"),
            LANDSAT_TM,
        ),
        (["B1", "B2", "B3", "B7"], "LANDSAT_5 TM", ("blue", "green", "red", "swir2"), LANDSAT_TM),
        (["Red", "Green", "Blue"], "", ("red", "green", "blue"), ""),
        (["near infrared", "Red Edge"], "", ("nir", "rededge1"), ""),
    ],
)
def test_descriptions_become_band_names(
    descriptions: list[str], hints: str, names: tuple[str, ...], sensor: str
) -> None:
    reading = read_band_names(descriptions, hints)
    assert reading.names == names
    assert reading.sensor == sensor


def test_bands_without_names_stay_unknown() -> None:
    reading = read_band_names(["", None, "Band 1", "elevation"])
    assert reading.names == (None, None, None, None)
    assert reading.index("red") is None
    assert reading.source == (
        "no description",
        "no description",
        "no band name in 'Band 1'",
        "no band name in 'elevation'",
    )


def test_index_is_one_based_and_the_source_says_why() -> None:
    reading = read_band_names(["B02", "B03", "B04 red"])
    assert reading.index("red") == 3 and reading.index("blue") == 1
    assert reading.source[2] == "colour word in 'B04 red'"
    assert reading.source[0] == "Sentinel-2 code in 'B02'"


def test_typed_colour_words() -> None:
    assert canonical("RED") == "red" and canonical(" nir ") == "nir" and canonical("near-infrared") == "nir"
    assert canonical("B04") is None and canonical("purple") is None
