"""The dock's inputs: bands, prompts and vocabulary, extent, layers that are not files, GeoPackage output."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from tests.plugin.helpers import fake_model, raster_pair, wait_for_task
from tests.rasters import utm_transform, write_raster

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.detection.layer_export import file_path, native_resolution  # noqa: E402
from qgis_clipcd.dock.widget import ClipCDDock  # noqa: E402
from qgis_clipcd.engine.worker import WorkerResult  # noqa: E402

SETTINGS = ("model", "output", "device", "min_area", "extent", "auto_prompts", "add_probability", "tta", "band_mode")


@pytest.fixture
def dock(qgis_iface, qgis_new_project: None):
    settings = qgis_core.QgsSettings()
    for key in SETTINGS:
        settings.remove(f"clipcd/{key}")
    widget = ClipCDDock(qgis_iface, check_engine=False)
    yield widget
    widget.deleteLater()


def add(path: Path, name: str) -> qgis_core.QgsRasterLayer:
    layer = qgis_core.QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    qgis_core.QgsProject.instance().addMapLayer(layer)
    return layer


def pair_layers(tmp_path: Path) -> tuple[qgis_core.QgsRasterLayer, qgis_core.QgsRasterLayer]:
    before, after = raster_pair(tmp_path)
    return add(before, "before"), add(after, "after")


def vsimem_layer(name: str, value: int, crs: str = "EPSG:32631") -> qgis_core.QgsRasterLayer:
    """A GDAL raster that lives in memory (``/vsimem/``): a layer that is not a file."""
    from osgeo import gdal, osr

    path = f"/vsimem/{name}.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(path, 128, 96, 3, gdal.GDT_Byte)
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    dataset.SetProjection(srs.ExportToWkt())
    for band in range(1, 4):
        dataset.GetRasterBand(band).Fill(value + band)
    dataset = None
    return add(Path(path), name)


class RecordingWorker:
    """Checks what the worker would see, then reports the outputs it was told to write."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def run(self, params, python, on_progress, is_canceled) -> WorkerResult:
        import rasterio

        for role in ("before", "after"):
            with rasterio.open(getattr(params, role)) as source:
                self.seen[role] = (source.count, source.res, source.crs.to_epsg(), source.read(1).mean())
        on_progress(0.5, "tiles 1/2")
        out = Path(params.out_dir)
        changes = out / "changes.gpkg"
        layer = qgis_core.QgsVectorLayer("Polygon?crs=EPSG:32631&field=area_m2:double", "changes", "memory")
        feature = qgis_core.QgsFeature(layer.fields())
        triangle = "POLYGON((500100 4999900,500200 4999900,500200 4999800,500100 4999900))"
        feature.setGeometry(qgis_core.QgsGeometry.fromWkt(triangle))
        feature.setAttributes([5000.0])
        layer.dataProvider().addFeatures([feature])
        options = qgis_core.QgsVectorFileWriter.SaveVectorOptions()
        options.layerName = "changes"
        qgis_core.QgsVectorFileWriter.writeAsVectorFormatV3(
            layer, str(changes), qgis_core.QgsCoordinateTransformContext(), options
        )
        (out / "probability.tif").write_bytes((Path(params.before)).read_bytes())
        outputs = {"changes": str(changes), "probability": str(out / "probability.tif")}
        return WorkerResult(ok=True, outputs=outputs, summary={"polygons": 1, "seconds": 0.1}, exit_code=0)


def run_dock(dock: ClipCDDock, monkeypatch: pytest.MonkeyPatch) -> RecordingWorker:
    from qgis_clipcd.detection import task as task_module

    recorder = RecordingWorker()
    monkeypatch.setattr(task_module, "Worker", lambda: recorder)
    monkeypatch.setattr(task_module, "find_python", lambda: "python3")
    dock.start()
    running = dock.task
    assert running is not None, dock.status.text()
    assert wait_for_task(running, timeout=60)
    return recorder


def test_bands_follow_the_colour_interpretation(dock: ClipCDDock, tmp_path: Path) -> None:
    data = np.arange(5 * 32 * 32, dtype=np.uint16).reshape(5, 32, 32)
    order = [ColorInterp.undefined, ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    five = add(write_raster(tmp_path / "five.tif", data, transform=utm_transform(), colorinterp=order), "five")
    three = add(raster_pair(tmp_path / "rgb")[0], "rgb")
    dock.form.bands_row.set_mode("name")
    dock.form.before.setLayer(five)
    assert not dock.form.bands_row.isHidden()
    assert dock.form.bands() is None  # by band name (the default): the engine decides and logs it
    dock.form.bands_row.set_mode("chosen")
    assert dock.form.bands() == (4, 3, 2)  # chosen bands start from the colour interpretation
    dock.form.bands_row.blue.setBand(5)
    assert dock.form.bands() == (4, 3, 5) and dock.run_params().bands == (4, 3, 5)
    dock.form.before.setLayer(three)
    assert dock.form.bands() is None and dock.form.bands_row.isHidden()


def test_vocabulary_and_automatic_prompts(dock: ClipCDDock, tmp_path: Path) -> None:
    card = {"config": {"accepts_prompts": True}, "vocabulary": ["building", "road", "tree"], "threshold": 0.5}
    dock.form.model.setFilePath(str(fake_model(tmp_path / "m.safetensors", card)))
    assert [dock.form.vocabulary.itemText(i) for i in range(1, 4)] == ["building", "road", "tree"]
    dock.form.prompts.setText("road")
    dock.form.vocabulary.activated.emit(1)
    assert dock.form.prompts.text() == "road, building" and dock.form.vocabulary.currentIndex() == 0
    assert dock.form.prompt_list() == ("road", "building")
    dock.form.auto_prompts.setChecked(True)
    assert not dock.form.prompts.isEnabled() and dock.form.prompt_list() == ()
    assert "picks class names" in dock.form.prompts_note.text()

    dock.form.model.setFilePath("")  # the default model ignores prompts
    assert not dock.form.auto_prompts.isEnabled() and not dock.form.vocabulary.isEnabled()
    assert "does not use prompts" in dock.form.prompts_note.text()


def test_extent_from_the_canvas_and_an_aoi_layer(dock: ClipCDDock, qgis_iface, tmp_path: Path) -> None:
    before, _ = pair_layers(tmp_path)
    utm = before.crs()
    assert dock.form.extent(utm) == (None, "")  # the layers' overlap

    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(utm)
    canvas.resize(400, 300)
    canvas.setExtent(qgis_core.QgsRectangle(500100, 4999200, 500500, 4999500))
    dock.form.extent_mode.setCurrentIndex(dock.form.extent_mode.findData("canvas"))
    box, problem = dock.form.extent(utm)
    assert problem == "" and box.contains(qgis_core.QgsRectangle(500100, 4999200, 500500, 4999500))

    dock.form.extent_mode.setCurrentIndex(dock.form.extent_mode.findData("aoi"))
    assert not dock.form.aoi.isHidden()
    aoi = qgis_core.QgsVectorLayer("Polygon?crs=EPSG:4326", "aoi", "memory")
    feature = qgis_core.QgsFeature()
    feature.setGeometry(qgis_core.QgsGeometry.fromWkt("POLYGON((3 45.1,3.01 45.1,3.01 45.11,3 45.11,3 45.1))"))
    aoi.dataProvider().addFeatures([feature])
    aoi.updateExtents()
    qgis_core.QgsProject.instance().addMapLayer(aoi)
    dock.form.aoi.setLayer(aoi)
    box, problem = dock.form.extent(utm)
    assert problem == "" and 500000 < box.xMinimum() < box.xMaximum() < 501000  # 3° E is UTM 31's central meridian
    assert math.isclose(box.height(), 1112, rel_tol=0.02)  # 0.01° of latitude


def test_layers_that_are_not_files_are_written_for_the_worker(
    dock: ClipCDDock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = vsimem_layer("mem-before", 40)
    after = vsimem_layer("mem-after", 90)
    assert file_path(before) is None and native_resolution(before) == 10.0
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    assert "temporary GeoTIFF" in dock.form.check_label.text() and dock.run_button.isEnabled()

    recorder = run_dock(dock, monkeypatch)
    assert recorder.seen["before"] == (3, (10.0, 10.0), 32631, 41.0)
    assert recorder.seen["after"] == (3, (10.0, 10.0), 32631, 91.0)
    assert dock.status.text().startswith("Done: 1 change polygon")
    out = Path(dock_task_out(dock))
    assert not (out / "inputs").exists()  # the exports are removed after the run


def dock_task_out(dock: ClipCDDock) -> str:
    groups = qgis_core.QgsProject.instance().layerTreeRoot().findGroups()
    layer = groups[0].findLayers()[0].layer()
    return str(Path(layer.source().split("|")[0]).parent)


def test_a_geopackage_output_gets_the_polygons_and_files_beside_it(
    dock: ClipCDDock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = pair_layers(tmp_path)
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    target = tmp_path / "results" / "town.gpkg"
    dock.form.output.setFilePath(str(target))
    dock.form.add_probability.setChecked(True)
    run_dock(dock, monkeypatch)

    assert target.is_file() and (target.parent / "town_probability.tif").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["town.gpkg", "town_probability.tif"]  # no staging
    group = qgis_core.QgsProject.instance().layerTreeRoot().findGroup("ClipCD — town")
    assert group is not None
    sources = sorted(node.layer().source().split("|")[0] for node in group.findLayers())
    assert sources == [str(target), str(target.parent / "town_probability.tif")]
    assert qgis_core.QgsSettings().value("clipcd/output") == str(target)


def test_an_export_too_large_is_refused_in_the_status_line(
    dock: ClipCDDock, qgis_iface, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qgis_clipcd.detection import layer_export

    monkeypatch.setattr(layer_export, "MAX_SIDE", 50)
    dock.form.before.setLayer(vsimem_layer("big-before", 10))
    dock.form.after.setLayer(vsimem_layer("big-after", 20))
    started = time.monotonic()
    dock.start()
    assert dock.task is None and dock.status.text().startswith("⚠") and "128 x 96 pixels" in dock.status.text()
    assert time.monotonic() - started < 5
