"""The engine's outputs open in real QGIS 3.22 with the right CRS, extent, values and polygons."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.inference.pipeline import detect
from backend.params import DetectParams
from tests.rasters import UTM_AREAL, UTM_X0, UTM_Y0
from tests.test_pipeline import difference_model, square_pair

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis


def test_outputs_load_in_qgis(tmp_path: Path, qgis_new_project: None) -> None:
    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    project = qgis_core.QgsProject.instance()

    mask = qgis_core.QgsRasterLayer(str(out / "mask.tif"), "mask")
    probability = qgis_core.QgsRasterLayer(str(out / "probability.tif"), "probability")
    changes = qgis_core.QgsVectorLayer(f"{out / 'changes.gpkg'}|layername=changes", "changes", "ogr")
    for layer in (mask, probability, changes):
        assert layer.isValid(), layer.source()
        assert layer.crs().authid() == "EPSG:32631"
        project.addMapLayer(layer)

    extent = mask.extent()
    assert (extent.xMinimum(), extent.yMaximum()) == pytest.approx((UTM_X0, UTM_Y0))
    assert (mask.width(), mask.height()) == (200, 150)
    provider = mask.dataProvider()
    assert provider.sourceNoDataValue(1) == 255
    inside = provider.sample(qgis_core.QgsPointXY(UTM_X0 + 805, UTM_Y0 - 655), 1)
    outside = provider.sample(qgis_core.QgsPointXY(UTM_X0 + 105, UTM_Y0 - 105), 1)
    assert inside == (1.0, True) and outside == (0.0, True)

    features = list(changes.getFeatures())
    assert len(features) == 1
    feature = features[0]
    assert {f.name() for f in changes.fields()} >= {"id", "area_m2", "mean_prob", "max_prob"}
    assert feature.geometry().area() == pytest.approx(120_000.0)
    assert feature["area_m2"] == pytest.approx(
        120_000.0 / UTM_AREAL, rel=1e-6
    )  # ellipsoidal; the CRS planar area is 120,000
    assert 0.5 < feature["mean_prob"] <= feature["max_prob"] <= 1.0


def test_qgis_polygonize_agrees_with_ours(tmp_path: Path, qgis_processing: None) -> None:
    """QGIS's own GDAL polygonize on our mask finds the same changed area as our vectorizer."""
    import processing

    before, after = square_pair(tmp_path)
    out = tmp_path / "out"
    result = detect(DetectParams(before=before, after=after, out_dir=out), loaded=difference_model())
    polygons = processing.run(
        "gdal:polygonize",
        {"INPUT": str(out / "mask.tif"), "BAND": 1, "FIELD": "DN", "OUTPUT": str(tmp_path / "qgis.gpkg")},
    )["OUTPUT"]
    layer = qgis_core.QgsVectorLayer(polygons, "qgis", "ogr")
    changed = [f for f in layer.getFeatures() if f["DN"] == 1]
    assert len(changed) == result.polygons
    assert sum(f.geometry().area() for f in changed) == pytest.approx(result.changed_area_m2 * UTM_AREAL, rel=1e-6)
