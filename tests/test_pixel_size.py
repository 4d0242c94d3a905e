"""Pixel size in metres against hand computations: UTM, US survey feet, and WGS 84 at 0, 45 and 70 degrees."""

from __future__ import annotations

import math

import pytest
from affine import Affine
from rasterio.crs import CRS

from backend.raster.pixel_size import describe, pixel_size_m

# WGS 84 ellipsoid
A = 6_378_137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
ARC_SECOND = 1 / 3600


def metres_per_degree(latitude: float) -> tuple[float, float]:
    """Along the parallel (N cos phi) and along the meridian (M), per degree: the textbook radii of curvature."""
    phi = math.radians(latitude)
    w = math.sqrt(1 - E2 * math.sin(phi) ** 2)
    prime_vertical = A / w
    meridional = A * (1 - E2) / w**3
    return math.pi / 180 * prime_vertical * math.cos(phi), math.pi / 180 * meridional


def test_projected_metres() -> None:
    size = pixel_size_m(CRS.from_epsg(32631), Affine(10, 0, 500_000, 0, -10, 5_000_000), 100, 100)
    assert size == pytest.approx((10.0, 10.0))


def test_projected_us_survey_feet() -> None:
    # EPSG:2263 (NAD83 / New York Long Island, ftUS): 1 ftUS = 1200/3937 m
    size = pixel_size_m(CRS.from_epsg(2263), Affine(3, 0, 1_000_000, 0, -3, 200_000), 50, 50)
    assert size == pytest.approx((3 * 1200 / 3937, 3 * 1200 / 3937), rel=1e-9)


def test_rotated_grid_takes_the_axis_lengths() -> None:
    angle = math.radians(30)
    rotated = Affine(20 * math.cos(angle), -5 * math.sin(angle), 0, 20 * math.sin(angle), 5 * math.cos(angle), 0)
    assert pixel_size_m(CRS.from_epsg(32631), rotated, 10, 10) == pytest.approx((20.0, 5.0))


@pytest.mark.parametrize("latitude", [0.0, 45.0, 70.0])
def test_geographic_at_the_centre_latitude(latitude: float) -> None:
    rows = 100
    top = latitude + rows / 2 * ARC_SECOND  # the raster's centre lies on `latitude`
    transform = Affine(ARC_SECOND, 0, 10.0, 0, -ARC_SECOND, top)
    size = pixel_size_m(CRS.from_epsg(4326), transform, 100, rows)
    along_parallel, along_meridian = metres_per_degree(latitude)
    assert size == pytest.approx((along_parallel * ARC_SECOND, along_meridian * ARC_SECOND), rel=1e-6)


def test_geographic_values_at_the_equator_match_the_published_degree_lengths() -> None:
    size = pixel_size_m(CRS.from_epsg(4326), Affine(1e-4, 0, 0, 0, -1e-4, 5e-3), 100, 100)
    assert size is not None
    assert size[0] == pytest.approx(11.131949, abs=1e-5)  # 1 deg of longitude at the equator: 111,319.49 m
    assert size[1] == pytest.approx(11.057427, abs=1e-5)  # 1 deg of latitude there: 110,574.27 m


def test_no_crs_is_unknown() -> None:
    assert pixel_size_m(None, Affine.identity(), 10, 10) is None
    assert describe(None) == "unknown (no CRS)"
    assert describe((10.0, 10.05)) == "10.0 m"
    assert describe((0.5, 0.5)) == "0.50 m"
    assert describe((21.9, 30.9)) == "21.9 x 30.9 m"
