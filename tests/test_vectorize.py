"""Tests for backend.outputs.vectorize on small georeferenced rasters written to tmp_path."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from pyproj import CRS as ProjCRS
from rasterio.transform import from_origin
from scipy import ndimage

from backend.errors import CanceledError, InputError, RasterError
from backend.outputs import vectorize as vectorize_module
from backend.outputs.vectorize import FIELDS, clean_mask, clean_mask_file, vectorize
from tests.rasters import UTM_AREAL

UTM = "EPSG:32633"
UTM_TRANSFORM = from_origin(500000.0, 6000000.0, 10.0, 10.0)  # on the central meridian


def _write(path, array, crs=UTM, transform=UTM_TRANSFORM, nodata=None):
    profile = {
        "driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
        "dtype": array.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def _inputs(tmp_path, mask, probability=None, crs=UTM, transform=UTM_TRANSFORM):
    if probability is None:
        probability = np.where(mask == 1, 200, 10).astype(np.uint8)
    mask_path = _write(tmp_path / "mask.tif", mask.astype(np.uint8), crs, transform, nodata=255)
    prob_path = _write(tmp_path / "probability.tif", probability, crs, transform)
    return mask_path, prob_path


def _read(path, layer="changes"):
    meta, _, geometry, fields = pyogrio.raw.read(path, layer=layer)
    geoms = shapely.from_wkb(geometry) if geometry is not None else np.array([], dtype=object)
    return meta, geoms, dict(zip(meta["fields"], fields, strict=True))


def _square_with_hole():
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 5:25] = 1
    mask[15:20, 10:15] = 0
    return mask


def test_square_with_hole_in_utm(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, _square_with_hole())
    out = tmp_path / "out" / "changes.gpkg"
    result = vectorize(mask_path, prob_path, out)
    assert result.count == 1 and result.path == out
    assert result.area_m2 == pytest.approx((400 - 25) * 100.0 / UTM_AREAL, rel=1e-6)
    meta, geoms, fields = _read(out)
    assert meta["geometry_type"] == "Polygon"
    assert list(meta["fields"]) == FIELDS
    polygon = geoms[0]
    assert polygon.bounds == pytest.approx((500050.0, 5999700.0, 500250.0, 5999900.0))
    assert len(polygon.interiors) == 1
    assert shapely.Polygon(polygon.interiors[0]).bounds == pytest.approx((500100.0, 5999800.0, 500150.0, 5999850.0))
    assert fields["id"].tolist() == [1]
    assert fields["area_m2"][0] == pytest.approx(37500.0 / UTM_AREAL, rel=1e-6)
    assert fields["mean_prob"][0] == pytest.approx(200 / 255)
    assert fields["max_prob"][0] == pytest.approx(200 / 255)


def test_output_has_crs_layer_and_no_leftovers(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, _square_with_hole())
    out = tmp_path / "changes.gpkg"
    vectorize(mask_path, prob_path, out, layer="my_changes")
    info = pyogrio.read_info(out, layer="my_changes")
    assert ProjCRS.from_user_input(info["crs"]).to_epsg() == 32633
    assert info["features"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changes.gpkg", "mask.tif", "probability.tif"]
    with sqlite3.connect(out) as db:  # GeoPackage 1.2, which QGIS 3.22's GDAL 3.6 reads without warnings
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200


def _ellipsoid_cell_area(lon0, lon1, lat0, lat1, a=6378137.0, f=1 / 298.257223563):
    """Exact area of a lon/lat rectangle on the ellipsoid (authalic-latitude formula)."""
    e2 = f * (2 - f)
    e = math.sqrt(e2)

    def q(lat):
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    b2 = (a * (1 - f)) ** 2
    return b2 * math.radians(lon1 - lon0) / 2 * (q(lat1) - q(lat0))


def test_geographic_area_is_geodesic(tmp_path):
    size = 1e-4  # degrees per pixel
    transform = from_origin(10.0, 45.01, size, size)
    mask = np.zeros((120, 120), np.uint8)
    mask[10:110, 10:110] = 1  # 100 x 100 px = 0.01 x 0.01 degrees
    mask_path, prob_path = _inputs(tmp_path, mask, crs="EPSG:4326", transform=transform)
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    truth = _ellipsoid_cell_area(10.001, 10.011, 45.01 - 0.011, 45.01 - 0.001)
    assert result.count == 1
    assert result.area_m2 == pytest.approx(truth, rel=5e-3)
    _, geoms, fields = _read(tmp_path / "c.gpkg")
    assert geoms[0].bounds == pytest.approx((10.001, 44.999, 10.011, 45.009))
    assert fields["area_m2"][0] == pytest.approx(truth, rel=5e-3)


def test_projected_units_other_than_metres(tmp_path):
    mask = np.zeros((10, 10), np.uint8)
    mask[2:5, 2:6] = 1  # 12 pixels of 10 x 10 US survey feet
    transform = from_origin(1_000_000.0, 200_000.0, 10.0, 10.0)
    mask_path, prob_path = _inputs(tmp_path, mask, crs="EPSG:2263", transform=transform)
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    # Truth on the ellipsoid: the rectangle's corners in lon/lat, measured geodesically.
    to_lonlat = pyproj.Transformer.from_crs("EPSG:2263", "EPSG:4326", always_xy=True)
    xs = [1_000_020.0, 1_000_060.0, 1_000_060.0, 1_000_020.0]
    ys = [199_980.0, 199_980.0, 199_950.0, 199_950.0]
    lon, lat = to_lonlat.transform(xs, ys)
    truth = abs(pyproj.Geod(ellps="GRS80").polygon_area_perimeter(lon, lat)[0])
    assert pytest.approx(truth, rel=1e-3) == 12 * 100 * (1200 / 3937) ** 2  # the state plane barely distorts here
    assert result.area_m2 == pytest.approx(truth, rel=1e-5)


def test_min_area_filters_small_polygons(tmp_path):
    mask = np.zeros((50, 50), np.uint8)
    mask[1:3, 1:3] = 1  # 400 m²
    mask[20:30, 20:30] = 1  # 10000 m²
    mask_path, prob_path = _inputs(tmp_path, mask)
    assert vectorize(mask_path, prob_path, tmp_path / "all.gpkg").count == 2
    result = vectorize(mask_path, prob_path, tmp_path / "big.gpkg", min_area=1000.0)
    assert result.count == 1 and result.area_m2 == pytest.approx(10000.0 / UTM_AREAL, rel=1e-6)
    _, _, fields = _read(tmp_path / "big.gpkg")
    assert fields["id"].tolist() == [1]


def test_nodata_is_never_polygonised(tmp_path):
    mask = np.full((30, 30), 255, np.uint8)
    mask[5:10, 5:10] = 1
    mask[20:25, :] = 0
    mask_path, prob_path = _inputs(tmp_path, mask)
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    assert result.count == 1 and result.area_m2 == pytest.approx(2500.0 / UTM_AREAL, rel=1e-6)


def test_empty_mask_gives_an_empty_layer_with_fields(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, np.zeros((20, 20), np.uint8))
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    assert result.count == 0 and result.area_m2 == 0.0
    info = pyogrio.read_info(tmp_path / "c.gpkg", layer="changes")
    assert info["features"] == 0
    assert list(info["fields"]) == FIELDS
    assert ProjCRS.from_user_input(info["crs"]).to_epsg() == 32633


@pytest.mark.parametrize("encoding", ["uint8", "float32"])
@pytest.mark.parametrize("strip_rows", [256, 7])
def test_mean_and_max_probability_per_polygon(tmp_path, monkeypatch, encoding, strip_rows):
    monkeypatch.setattr(vectorize_module, "STRIP_ROWS", strip_rows)  # polygons spanning several strips
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:15] = 1
    mask[20:35, 30:50] = 1
    mask[24:31, 34:46] = 0  # hole ...
    mask[26:29, 38:42] = 1  # ... with an island in it
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=mask.shape).astype(np.uint8)
    probability = codes if encoding == "uint8" else (codes / 255.0).astype(np.float32)
    mask_path, prob_path = _inputs(tmp_path, mask, probability)
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    assert result.count == 3
    _, geoms, fields = _read(tmp_path / "c.gpkg")
    values = codes / 255.0
    ring = np.zeros_like(mask, bool)
    ring[20:35, 30:50] = True
    ring[24:31, 34:46] = False
    expected = {
        (500050.0, 5999850.0): values[5:15, 5:15],
        (500300.0, 5999650.0): values[ring],
        (500380.0, 5999710.0): values[26:29, 38:42],
    }
    for geom, mean, peak in zip(geoms, fields["mean_prob"], fields["max_prob"], strict=True):
        pixels = expected[(geom.bounds[0], geom.bounds[1])]
        assert mean == pytest.approx(pixels.mean(), abs=1e-6)
        assert peak == pytest.approx(pixels.max(), abs=1e-6)
    assert sorted(fields["id"].tolist()) == [1, 2, 3]


def test_cleanup_removes_specks_and_fills_pinholes(tmp_path):
    mask = np.zeros((60, 60), np.uint8)
    mask[10:40, 10:40] = 1
    mask[25, 25] = 0  # pinhole
    mask[50, 50] = mask[5, 55] = mask[55, 2] = 1  # specks
    mask_path, prob_path = _inputs(tmp_path, mask)
    assert vectorize(mask_path, prob_path, tmp_path / "raw.gpkg").count == 4
    result = vectorize(mask_path, prob_path, tmp_path / "clean.gpkg", cleanup=1)
    assert result.count == 1
    _, geoms, _ = _read(tmp_path / "clean.gpkg")
    assert len(geoms[0].interiors) == 0
    assert not any(p.name.startswith(".clipcd") for p in tmp_path.iterdir())


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_strip_cleanup_equals_whole_array(tmp_path, radius):
    rng = np.random.default_rng(radius)
    blobs = ndimage.gaussian_filter(rng.random((97, 83)), sigma=radius) > 0.5  # blobs of about the radius
    mask = (blobs ^ (rng.random(blobs.shape) < 0.03)).astype(np.uint8)  # plus specks and pinholes
    mask[rng.random(mask.shape) < 0.01] = 255
    mask_path = _write(tmp_path / "mask.tif", mask, nodata=255)
    whole = clean_mask(mask, radius)
    assert not np.array_equal(whole, mask)
    assert 0.1 < (whole == 1).mean() < 0.9
    clean_mask_file(mask_path, tmp_path / "clean.tif", radius, strip_rows=7)
    with rasterio.open(tmp_path / "clean.tif") as src:
        np.testing.assert_array_equal(src.read(1), whole)
    # the halo is what makes this exact: strips without one differ
    naive = np.concatenate([clean_mask(mask[s : s + 7], radius) for s in range(0, 97, 7)])
    assert not np.array_equal(naive, whole)


def test_clean_mask_keeps_nodata():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    mask[0:3, :] = 255
    cleaned = clean_mask(mask, 2)
    np.testing.assert_array_equal(cleaned == 255, mask == 255)


def test_simplify_reduces_vertices_and_keeps_holes(tmp_path):
    rows, cols = np.mgrid[0:80, 0:80]
    mask = ((rows > 5) & (cols > 5) & (rows + cols < 120)).astype(np.uint8)  # staircase diagonal
    mask[30:40, 30:40] = 0
    mask_path, prob_path = _inputs(tmp_path, mask)
    vectorize(mask_path, prob_path, tmp_path / "raw.gpkg")
    vectorize(mask_path, prob_path, tmp_path / "simple.gpkg", simplify=15.0)
    _, raw, raw_fields = _read(tmp_path / "raw.gpkg")
    _, simple, simple_fields = _read(tmp_path / "simple.gpkg")
    assert shapely.get_num_coordinates(simple[0]) < shapely.get_num_coordinates(raw[0]) / 5
    assert len(simple[0].interiors) == 1
    assert simple[0].is_valid
    assert simple_fields["area_m2"][0] == pytest.approx(raw_fields["area_m2"][0], rel=0.05)
    assert simple_fields["mean_prob"][0] == pytest.approx(raw_fields["mean_prob"][0])


def test_cancel_leaves_no_geopackage(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, _square_with_hole())
    calls = []

    def is_canceled():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CanceledError):
        vectorize(mask_path, prob_path, tmp_path / "c.gpkg", cleanup=1, is_canceled=is_canceled)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif", "probability.tif"]


def test_progress_reaches_one(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, _square_with_hole())
    reports = []
    vectorize(mask_path, prob_path, tmp_path / "c.gpkg", progress=lambda f, m: reports.append(f))
    assert reports[-1] == 1.0
    assert reports == sorted(reports)


def test_grid_mismatch_is_a_raster_error(tmp_path):
    mask_path, _ = _inputs(tmp_path, _square_with_hole())
    other = _write(tmp_path / "other.tif", np.zeros((41, 40), np.uint8))
    with pytest.raises(RasterError, match="grid"):
        vectorize(mask_path, other, tmp_path / "c.gpkg")
    assert not (tmp_path / "c.gpkg").exists()


def test_negative_parameters_are_input_errors(tmp_path):
    mask_path, prob_path = _inputs(tmp_path, _square_with_hole())
    with pytest.raises(InputError):
        vectorize(mask_path, prob_path, tmp_path / "c.gpkg", min_area=-1.0)


def test_missing_mask_is_a_raster_error(tmp_path):
    _, prob_path = _inputs(tmp_path, _square_with_hole())
    with pytest.raises(RasterError, match=r"nothere\.tif"):
        vectorize(tmp_path / "nothere.tif", prob_path, tmp_path / "c.gpkg")


def test_web_mercator_areas_are_ground_areas(tmp_path):
    """EPSG:3857 inflates area by about 1/cos²(latitude): 2.7x at 52°N. area_m2 must not."""
    lat = 52.0
    _, y0 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(5.0, lat)
    pixel = 10.0 / math.cos(math.radians(lat))  # about 10 m on the ground
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1  # about 100 m x 100 m
    transform = from_origin(556_597.0, y0 + 10 * pixel, pixel, pixel)
    mask_path, prob_path = _inputs(tmp_path, mask, crs="EPSG:3857", transform=transform)
    result = vectorize(mask_path, prob_path, tmp_path / "c.gpkg")
    assert result.area_m2 == pytest.approx(10_000.0, rel=0.01)
    assert shapely.area(_read(tmp_path / "c.gpkg")[1][0]) == pytest.approx(
        10_000.0 / math.cos(math.radians(lat)) ** 2, rel=0.01
    )
