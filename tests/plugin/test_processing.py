"""``clipcd:detect_change`` through processing.run, a graphical model (.model3) and qgis_process."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.plugin import write_pair
from tests.rasters import UTM_X0, UTM_Y0

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis


def polygons(path: str | Path) -> list[object]:
    layer = qgis_core.QgsVectorLayer(str(path), "changes", "ogr")
    assert layer.isValid(), path
    assert layer.crs().authid() == "EPSG:32631"
    assert {"area_m2", "mean_prob", "max_prob"} <= {f.name() for f in layer.fields()}
    return list(layer.getFeatures())


def test_algorithm_declares_its_parameters(provider: object) -> None:
    algorithm = qgis_core.QgsApplication.processingRegistry().algorithmById("clipcd:detect_change")
    assert algorithm is not None
    names = [p.name() for p in algorithm.parameterDefinitions()]
    assert names == [
        "BEFORE",
        "AFTER",
        "PROMPTS",
        "AUTO_PROMPTS",
        "PROMPT_MATCH",
        "MODEL",
        "THRESHOLD",
        "MIN_AREA",
        "DEVICE",
        "TTA",
        "EXTENT",
        "BANDS",
        "OUTPUT_POLYGONS",
        "OUTPUT_PROBABILITY",
    ]
    device = algorithm.parameterDefinition("DEVICE")
    assert device.usesStaticStrings() and device.options() == ["auto", "cpu", "cuda"]
    assert algorithm.parameterDefinition("AUTO_PROMPTS").defaultValue() is False  # typed prompts count
    match = algorithm.parameterDefinition("PROMPT_MATCH")
    assert match.usesStaticStrings() and match.options() == ["appeared", "disappeared", "either"]
    assert match.defaultValue() == "appeared"
    tta = algorithm.parameterDefinition("TTA")
    assert tta.usesStaticStrings() and tta.options() == ["model", "none", "flips", "d4"]
    assert tta.defaultValue() == "model"  # the model card's test-time augmentation
    assert algorithm.parameterDefinition("MODEL").defaultValue() is None  # empty: the model picked by pixel size
    assert algorithm.parameterDefinition("OUTPUT_PROBABILITY").flags() & 8  # FlagOptional


def test_processing_run_writes_polygons(tmp_path: Path, provider: object) -> None:
    import processing

    before, after = write_pair(tmp_path)
    result = processing.run(
        "clipcd:detect_change",
        {
            "BEFORE": str(before),
            "AFTER": str(after),
            "THRESHOLD": 0.01,
            "DEVICE": "cpu",
            "OUTPUT_POLYGONS": str(tmp_path / "result" / "changes.gpkg"),
            "OUTPUT_PROBABILITY": str(tmp_path / "result" / "probability.tif"),
        },
    )
    assert result["OUTPUT_POLYGONS"] == str(tmp_path / "result" / "changes.gpkg")
    features = polygons(result["OUTPUT_POLYGONS"])
    assert len(features) == result["POLYGONS"] >= 1
    assert result["CHANGED_AREA_M2"] > 0
    assert qgis_core.QgsRasterLayer(result["OUTPUT_PROBABILITY"], "p").isValid()
    left = {p.name for p in (tmp_path / "result").iterdir()} - {"probability.tif.aux.xml"}  # QGIS's statistics
    assert left == {"changes.gpkg", "probability.tif"}


def test_engine_errors_become_processing_exceptions(tmp_path: Path, provider: object) -> None:
    import processing

    before, after = write_pair(tmp_path)
    model = tmp_path / "broken.safetensors"
    model.write_bytes(b"not a model")
    params = {"BEFORE": str(before), "AFTER": str(after), "MODEL": str(model), "OUTPUT_POLYGONS": "TEMPORARY_OUTPUT"}
    with pytest.raises(qgis_core.QgsProcessingException, match=r"broken\.safetensors"):
        processing.run("clipcd:detect_change", params)
    params = {"BEFORE": str(before), "AFTER": str(after), "BANDS": "1,2", "OUTPUT_POLYGONS": "TEMPORARY_OUTPUT"}
    with pytest.raises(qgis_core.QgsProcessingException, match="three band numbers"):
        processing.run("clipcd:detect_change", params)


def in_memory_copy(path: Path, name: str) -> qgis_core.QgsRasterLayer:
    """The GeoTIFF copied into GDAL's /vsimem/: a layer whose data is not a file."""
    from osgeo import gdal

    target = f"/vsimem/{name}.tif"
    gdal.FileFromMemBuffer(target, path.read_bytes())
    layer = qgis_core.QgsRasterLayer(target, name, "gdal")
    assert layer.isValid()
    qgis_core.QgsProject.instance().addMapLayer(layer)
    return layer


def test_layers_that_are_not_files_are_written_and_give_the_same_polygons(tmp_path: Path, provider: object) -> None:
    import processing

    before, after = write_pair(tmp_path)
    common = {"THRESHOLD": 0.01, "DEVICE": "cpu"}
    from_files = processing.run(
        "clipcd:detect_change",
        {"BEFORE": str(before), "AFTER": str(after), "OUTPUT_POLYGONS": str(tmp_path / "files.gpkg"), **common},
    )
    in_memory = processing.run(
        "clipcd:detect_change",
        {
            "BEFORE": in_memory_copy(before, "mem_before"),
            "AFTER": in_memory_copy(after, "mem_after"),
            "OUTPUT_POLYGONS": str(tmp_path / "memory.gpkg"),
            **common,
        },
    )
    assert in_memory["POLYGONS"] == from_files["POLYGONS"] >= 1
    assert geometries(in_memory["OUTPUT_POLYGONS"]) == geometries(from_files["OUTPUT_POLYGONS"])


def geometries(path: str | Path) -> list[str]:
    """The polygons as sorted WKT with coordinates rounded to the centimetre."""
    return sorted(feature.geometry().asWkt(2) for feature in polygons(path))


def test_the_dock_and_processing_give_the_same_polygons(
    tmp_path: Path, provider: object, qgis_iface, qgis_new_project: None
) -> None:
    import processing

    from tests.plugin.helpers import run_dock

    before, after = write_pair(tmp_path)
    result = processing.run(
        "clipcd:detect_change",
        {"BEFORE": str(before), "AFTER": str(after), "THRESHOLD": 0.01, "DEVICE": "cpu", "MIN_AREA": 10.0,
         "OUTPUT_POLYGONS": str(tmp_path / "processing.gpkg")},
    )  # fmt: skip
    dock = run_dock(qgis_iface, before, after, tmp_path / "dock.gpkg", threshold=0.01, min_area=10.0)
    assert geometries(tmp_path / "dock.gpkg") == geometries(result["OUTPUT_POLYGONS"])
    assert len(geometries(tmp_path / "dock.gpkg")) == result["POLYGONS"] >= 1
    release(dock)


def release(widget: object) -> None:
    """Delete a widget and the run's layers now, not when the garbage collector next runs in another test.

    A dock left to the cyclic collector was destroyed in the middle of a later test's Processing call;
    deleting it here keeps each test's QGIS objects inside that test.
    """
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    widget.deleteLater()  # type: ignore[attr-defined]
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    qgis_core.QgsProject.instance().removeAllMapLayers()
    gc.collect()


@pytest.mark.slow
def test_graphical_model_runs_the_algorithm(tmp_path: Path, provider: object) -> None:
    import processing

    model = qgis_core.QgsProcessingModelAlgorithm("ClipCD in a model", "tests")
    for name in ("before", "after"):
        model.addModelParameter(
            qgis_core.QgsProcessingParameterRasterLayer(name, name), qgis_core.QgsProcessingModelParameter(name)
        )
    child = qgis_core.QgsProcessingModelChildAlgorithm("clipcd:detect_change")
    child.setChildId("detect")
    source = qgis_core.QgsProcessingModelChildParameterSource
    child.addParameterSources("BEFORE", [source.fromModelParameter("before")])
    child.addParameterSources("AFTER", [source.fromModelParameter("after")])
    child.addParameterSources("THRESHOLD", [source.fromStaticValue(0.01)])
    child.addParameterSources("DEVICE", [source.fromStaticValue("cpu")])
    output = qgis_core.QgsProcessingModelOutput("changes")
    output.setChildId("detect")
    output.setChildOutputName("OUTPUT_POLYGONS")
    child.setModelOutputs({"changes": output})
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    path = tmp_path / "clipcd.model3"
    assert model.toFile(str(path))

    loaded = qgis_core.QgsProcessingModelAlgorithm()
    assert loaded.fromFile(str(path))
    before, after = write_pair(tmp_path)
    target = tmp_path / "model-changes.gpkg"
    result = processing.run(loaded, {"before": str(before), "after": str(after), "detect:changes": str(target)})
    assert result["detect:changes"] == str(target)
    assert len(polygons(target)) >= 1


@pytest.mark.slow
def test_qgis_process_runs_the_algorithm(tmp_path: Path) -> None:
    qgis_process = shutil.which("qgis_process.bin")
    if qgis_process is None:
        pytest.skip("qgis_process.bin is not installed")
    plugin = tmp_path / "plugins" / "qgis_clipcd"  # the packaged layout, linked to the checkout
    plugin.mkdir(parents=True)
    for item in (REPO_ROOT / "qgis_clipcd").iterdir():  # modules and the packages by stage
        if item.name != "__pycache__":
            (plugin / item.name).symlink_to(item)
    for name in ("metadata.txt", "resources", "backend"):
        (plugin / name).symlink_to(REPO_ROOT / name)
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "QGIS_PLUGINPATH": str(plugin.parent),
        "QT_QPA_PLATFORM": "offscreen",
        "CLIPCD_PYTHON": sys.executable,
    }
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    env.pop("QGIS_OPTIONS_PATH", None)

    def qgis(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [qgis_process, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    qgis("plugins", "enable", "qgis_clipcd")
    before, after = write_pair(tmp_path)
    target = tmp_path / "shell-changes.gpkg"
    done = qgis(
        "run",
        "clipcd:detect_change",
        "--",
        f"BEFORE={before}",
        f"AFTER={after}",
        "THRESHOLD=0.01",
        "DEVICE=cpu",
        f"OUTPUT_POLYGONS={target}",
    )
    assert "OUTPUT_POLYGONS" in done.stdout
    assert len(polygons(target)) >= 1


def test_parameters_become_run_params(tmp_path: Path, provider: object) -> None:
    """EXTENT in another CRS is converted to the before raster's; prompts, bands and defaults pass through."""
    from qgis_clipcd.models.choice import choose_model
    from qgis_clipcd.processing_provider.algorithm import DetectChangeAlgorithm

    gc.collect()  # no object of an earlier test is destroyed during the transforms below
    before, after = write_pair(tmp_path)
    algorithm = qgis_core.QgsApplication.processingRegistry().createAlgorithmById("clipcd:detect_change")
    assert isinstance(algorithm, DetectChangeAlgorithm)
    context = qgis_core.QgsProcessingContext()
    context.setProject(qgis_core.QgsProject.instance())  # as Processing sets it: transforms read the project's context
    utm = qgis_core.QgsCoordinateReferenceSystem("EPSG:32631")
    wgs84 = qgis_core.QgsCoordinateReferenceSystem("EPSG:4326")
    transform = qgis_core.QgsCoordinateTransform(utm, wgs84, qgis_core.QgsProject.instance())
    corner = transform.transform(qgis_core.QgsPointXY(UTM_X0 + 200, UTM_Y0 - 500))
    far = transform.transform(qgis_core.QgsPointXY(UTM_X0 + 500, UTM_Y0 - 100))
    extent = f"{corner.x()},{far.x()},{corner.y()},{far.y()} [EPSG:4326]"
    feedback = qgis_core.QgsProcessingFeedback()
    algorithm.prepareAlgorithm(
        {
            "BEFORE": str(before),
            "AFTER": str(after),
            "PROMPTS": "building,\nroad",
            "AUTO_PROMPTS": False,
            "MIN_AREA": 25,
            "DEVICE": "cuda",
            "EXTENT": extent,
            "BANDS": "3,2,1",
            "TTA": "flips",
            "PROMPT_MATCH": "either",
        },
        context,
        feedback,
    )
    assert algorithm._failure == ""
    params = algorithm._prepared.params
    assert (params.before, params.after) == (str(before), str(after))
    assert params.prompts == ("building", "road") and params.prompt_match == "either"
    assert "--prompt-match" in params.to_argv()
    assert params.min_area == 25 and params.device == "cuda" and params.bands == (3, 2, 1) and params.tta == "flips"
    assert params.threshold is None
    assert params.model == choose_model(None, (10.0, 10.0)).path  # the shipped model picked for 10 m pixels
    assert params.extent is not None
    assert params.extent == pytest.approx((UTM_X0 + 200, UTM_Y0 - 500, UTM_X0 + 500, UTM_Y0 - 100), abs=2.0)
    algorithm.prepareAlgorithm(
        {"BEFORE": str(before), "AFTER": str(after), "PROMPTS": "road", "AUTO_PROMPTS": True, "THRESHOLD": 0.4},
        context,
        feedback,
    )
    auto = algorithm._prepared.params
    assert auto.prompts == () and auto.extent is None and auto.threshold == pytest.approx(0.4)
    assert auto.prompt_match == "appeared"


def test_canceled_feedback_stops_the_run(tmp_path: Path, provider: object) -> None:
    import processing

    before, after = write_pair(tmp_path)
    feedback = qgis_core.QgsProcessingFeedback()
    feedback.cancel()
    target = tmp_path / "changes.gpkg"
    with pytest.raises(qgis_core.QgsProcessingException, match=r"[Cc]ancel"):
        processing.run(
            "clipcd:detect_change",
            {"BEFORE": str(before), "AFTER": str(after), "OUTPUT_POLYGONS": str(target)},
            feedback=feedback,
        )
    assert not target.exists()
