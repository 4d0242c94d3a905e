"""The dock lists only rasters, checks the pair, follows the model card and builds the RunParams."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.helpers import fake_model, raster_pair

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.dock.widget import ClipCDDock  # noqa: E402
from qgis_clipcd.models.card import (  # noqa: E402
    CardError,
    accepts_prompts,
    default_threshold,
    range_text,
    read_card,
    summary,
)
from qgis_clipcd.params import RunParams  # noqa: E402


@pytest.fixture
def dock(qgis_iface, qgis_new_project: None):
    settings = qgis_core.QgsSettings()
    for key in ("model", "output", "device", "min_area", "extent", "auto_prompts", "add_probability", "tta"):
        settings.remove(f"clipcd/{key}")
    widget = ClipCDDock(qgis_iface, check_engine=False)
    yield widget
    widget.deleteLater()


def add_rasters(tmp_path: Path, after_crs: str = "EPSG:32631") -> tuple:
    before, after = raster_pair(tmp_path, after_crs=after_crs)
    layers = (qgis_core.QgsRasterLayer(str(before), "before"), qgis_core.QgsRasterLayer(str(after), "after"))
    qgis_core.QgsProject.instance().addMapLayers(layers)
    return layers


def test_default_card_is_read_without_torch() -> None:
    card = read_card()
    assert not accepts_prompts(card)
    assert 0 < default_threshold(card) < 1
    text = summary(card)
    assert text.startswith("Plain siamese network") and "Validation F1" in text and "levir-cd" in text
    assert "Pixel sizes: 0.3-1.5 m; bands red 665 nm, green 560 nm, blue 490 nm" in text
    assert range_text({"bands": ["red", "green", "blue"]}) == "range unknown; bands red, green, blue"


def test_a_non_model_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.safetensors"
    bogus.write_text("hello, not a model")
    with pytest.raises(CardError, match=r"notes\.safetensors"):
        read_card(bogus)


def test_lists_only_rasters(dock: ClipCDDock, tmp_path: Path) -> None:
    add_rasters(tmp_path)
    vector = qgis_core.QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    qgis_core.QgsProject.instance().addMapLayer(vector)
    names = {dock.form.before.itemText(i) for i in range(dock.form.before.count())} - {""}
    assert names == {"before", "after"}


def test_same_grid_passes_and_a_crs_difference_is_flagged(dock: ClipCDDock, tmp_path: Path) -> None:
    before, after = add_rasters(tmp_path / "same")
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    assert dock.form.check_label.text().startswith("✓")
    assert dock.run_button.isEnabled()

    _, etrs = add_rasters(tmp_path / "etrs", after_crs="EPSG:25831")  # ETRS89 UTM 31N: same place
    dock.form.after.setLayer(etrs)
    text = dock.form.check_label.text()
    assert text.startswith("⚠") and "CRS (EPSG:32631 vs EPSG:25831)" in text and "aligned" in text
    assert dock.run_button.isEnabled()

    _, far = add_rasters(tmp_path / "far", after_crs="EPSG:32632")  # same numbers, 6° east
    dock.form.after.setLayer(far)
    assert "do not overlap" in dock.form.check_label.text() and not dock.run_button.isEnabled()
    dock.form.after.setLayer(before)
    assert "same layer" in dock.form.check_label.text() and not dock.run_button.isEnabled()


def test_prompts_follow_the_model_card(dock: ClipCDDock, tmp_path: Path) -> None:
    assert not dock.form.prompts.isEnabled()
    assert "does not use prompts" in dock.form.prompts_note.text()
    assert dock.form.threshold.value() == pytest.approx(default_threshold(read_card()))

    prompted = fake_model(tmp_path / "prompted.safetensors", {"config": {"accepts_prompts": True}, "threshold": 0.6})
    dock.form.model.setFilePath(str(prompted))
    assert dock.form.prompts.isEnabled() and dock.form.prompts_note.text() == ""
    assert dock.form.threshold.value() == pytest.approx(0.6)


def test_clip_weights_make_prompts_filter_any_model(dock: ClipCDDock, tmp_path: Path) -> None:
    assert not dock.form.prompts.isEnabled() and dock.form.prompt_match.isHidden()  # no text side, no CLIP
    dock.engine.clipChanged.emit("remoteclip-vit-b-32")  # what the engine says after its check
    assert dock.form.prompts.isEnabled() and not dock.form.prompt_match.isHidden()
    note = dock.form.prompts_note.text()
    assert "CLIP (remoteclip-vit-b-32) labels each change" in note and "that became one are kept" in note
    dock.form.prompt_match.setCurrentIndex(dock.form.prompt_match.findData("disappeared"))
    assert "that were one are kept" in dock.form.prompts_note.text()
    dock.form.prompts.setText("building")
    before, after = add_rasters(tmp_path)
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    params = dock.run_params(str(tmp_path / "out"))
    assert params.prompts == ("building",) and params.prompt_match == "disappeared"
    assert "--prompt-match disappeared" in " ".join(params.to_argv())
    dock.engine.clipChanged.emit(None)  # the weights were removed
    assert not dock.form.prompts.isEnabled() and dock.run_params(str(tmp_path / "out")).prompts == ()


def test_run_params_match_the_widgets(dock: ClipCDDock, tmp_path: Path) -> None:
    before, after = add_rasters(tmp_path)
    model = fake_model(tmp_path / "m.safetensors", {"config": {"accepts_prompts": True}, "threshold": 0.4})
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    dock.form.model.setFilePath(str(model))
    dock.form.prompts.setText(" building,  road ,, ")
    dock.form.threshold.setValue(0.35)
    dock.form.min_area.setValue(250)
    dock.form.device.setCurrentIndex(dock.form.device.findData("cpu"))
    assert dock.form.tta.currentData() == "model"  # by default the model card's test-time augmentation
    dock.form.tta.setCurrentIndex(dock.form.tta.findData("flips"))

    assert dock.run_params(str(tmp_path / "out")) == RunParams(
        before=str(tmp_path / "before.tif"),
        after=str(tmp_path / "after.tif"),
        out_dir=str(tmp_path / "out"),
        model=str(model),
        prompts=("building", "road"),
        threshold=0.35,
        min_area=250.0,
        device="cpu",
        tta="flips",
    )
    dock.copy_command()
    copied = qgis_core.QgsApplication.clipboard().text()
    assert "-m backend detect" in copied and "--prompts building,road" in copied


def test_prompts_are_stored_in_the_project(dock: ClipCDDock, qgis_iface) -> None:
    dock.form.prompts.setText("building")
    dock.form.store_prompts()
    assert qgis_core.QgsProject.instance().readEntry("clipcd", "prompts", "")[0] == "building"
    assert ClipCDDock(qgis_iface, check_engine=False).form.prompts.text() == "building"


def test_run_and_cancel_from_the_dock(dock: ClipCDDock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qgis_clipcd.detection import task as task_module
    from tests.plugin.helpers import wait_for_task
    from tests.plugin.test_task import FakeWorker

    monkeypatch.setattr(task_module, "Worker", lambda: FakeWorker(wait_for_cancel=True))
    monkeypatch.setattr(task_module, "find_python", lambda: "python3")
    before, after = add_rasters(tmp_path)
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    dock.start()
    running = dock.task
    assert running is not None and not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    out = Path(running.params.out_dir)
    assert out.is_dir() and out.name.startswith("clipcd-")  # a temporary folder by default
    running.progressChanged.connect(lambda value: dock.cancel())

    assert wait_for_task(running, timeout=30)
    assert dock.task is None and dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert dock.progress.value() == 25 and dock.status.text().startswith("Canceled")
    assert not out.exists()


def test_a_dock_deleted_mid_run_leaves_the_task_to_finish(
    qgis_iface, qgis_new_project: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qgis.PyQt import sip

    from qgis_clipcd.detection import task as task_module
    from tests.plugin.helpers import wait_for_task
    from tests.plugin.test_task import FakeWorker

    monkeypatch.setattr(task_module, "Worker", lambda: FakeWorker(wait_for_cancel=True))
    monkeypatch.setattr(task_module, "find_python", lambda: "python3")
    before, after = add_rasters(tmp_path)
    doomed = ClipCDDock(qgis_iface, check_engine=False)
    doomed.form.before.setLayer(before)
    doomed.form.after.setLayer(after)
    doomed.start()
    running = doomed.task
    running.progressChanged.connect(lambda value: running.cancel())
    sip.delete(doomed)  # what the plugin's unload does, later
    assert wait_for_task(running, timeout=30)
    assert not qgis_core.QgsApplication.taskManager().activeTasks()


def test_a_zero_threshold_means_the_models(dock: ClipCDDock, tmp_path: Path) -> None:
    dock.form.threshold.setValue(0.0)
    assert dock.form.threshold.text() == "the model's" and dock.run_params().threshold is None
    dock.form.model.setFilePath(str(tmp_path / "missing.safetensors"))  # no card: the engine decides
    assert dock.form.threshold.value() == 0.0 and "missing.safetensors" in dock.form.model_summary.text()
    dock.form.model.setFilePath("")
    assert dock.run_params().threshold == pytest.approx(default_threshold(read_card()))
