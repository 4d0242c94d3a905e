"""Sensor rules against hand computations: Sentinel-2 (both baselines), Landsat Collection 2 Level-2."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InputError
from backend.raster.radiometry import LANDSAT, SENTINEL_2, sentinel2_offset
from backend.raster.transform import reflectance_stretch

DN = np.array([[[0, 1000, 2000, 4000, 9000]]], dtype=np.uint16).repeat(3, axis=0)


def test_sentinel2_before_baseline_4() -> None:
    # reflectance = DN / 10000; input = reflectance / 0.3, clipped
    out = reflectance_stretch(SENTINEL_2, white=0.3).apply(DN)
    expected = np.clip(np.array([0.0, 0.1, 0.2, 0.4, 0.9]) / 0.3, 0, 1)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)


def test_sentinel2_baseline_4_offset() -> None:
    # reflectance = (DN - 1000) / 10000: DN 2000 -> 0.1 -> 0.1 / 0.5 = 0.2
    out = reflectance_stretch(SENTINEL_2, white=0.5, offset=-1000).apply(DN)
    np.testing.assert_allclose(out[1, 0], [0.0, 0.0, 0.2, 0.6, 1.0], atol=1e-6)


def test_landsat_collection_2_level_2() -> None:
    dn = np.array([[[7273, 10000, 18182, 30000]]], dtype=np.uint16).repeat(3, axis=0)
    reflectance = dn[0, 0] * 0.0000275 - 0.2  # 0.00001, 0.075, 0.30001, 0.625
    out = reflectance_stretch(LANDSAT, white=0.4).apply(dn)
    np.testing.assert_allclose(out[2, 0], np.clip(reflectance / 0.4, 0, 1), atol=1e-5)
    assert out[2, 0, 2] == pytest.approx(0.30001 / 0.4, abs=1e-4)


def test_bad_rule_or_white_is_refused() -> None:
    with pytest.raises(InputError, match="'modis' is not one of sentinel-2, landsat"):
        reflectance_stretch("modis", white=0.3)
    with pytest.raises(InputError, match="white=0 must be a reflectance"):
        reflectance_stretch(SENTINEL_2, white=0)


def test_sentinel2_offset_from_metadata() -> None:
    assert sentinel2_offset({"BOA_ADD_OFFSET_B4": "-1000"}) == -1000.0
    assert sentinel2_offset({"radio_add_offset": "-1000"}) == -1000.0
    assert sentinel2_offset({"PROCESSING_BASELINE": "04.00"}) == -1000.0
    assert sentinel2_offset({"PROCESSING_BASELINE": "02.04"}) == 0.0
    assert sentinel2_offset({"AREA_OR_POINT": "Area"}) is None
