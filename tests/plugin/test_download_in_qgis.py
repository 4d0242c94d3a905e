"""The default model's download inside QGIS: the task, the subtask a run waits for, the algorithm, the dock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qgis_clipcd.models import store as model_store
from qgis_clipcd.models.download import partial_path
from tests.plugin import write_pair
from tests.plugin.helpers import wait_for_task
from tests.plugin.release_server import REAL_MODEL, Server

# -- in QGIS: the background task and the Processing algorithm ----------------------------------


@pytest.mark.qgis
def test_download_task_runs_in_the_task_manager(packaged: Path, server: Server, qgis_new_project: None) -> None:
    from qgis.core import QgsApplication

    from qgis_clipcd.models.download_task import DownloadTask

    task = DownloadTask()
    progress: list[float] = []
    task.progressChanged.connect(progress.append)
    QgsApplication.taskManager().addTask(task)
    assert wait_for_task(task, 60)
    assert task.error == "" and task.path == packaged / model_store.DEFAULT_MODEL_NAME
    assert task.path.read_bytes() == REAL_MODEL.read_bytes()
    assert progress and max(progress) == pytest.approx(100.0) and 0 < min(progress) < 100


@pytest.mark.qgis
def test_canceling_the_download_task_leaves_no_model(packaged: Path, server: Server, qgis_new_project: None) -> None:
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    from qgis_clipcd.models.download_task import DownloadTask

    server.served.delay = 0.01  # ~800 blocks of 8 KiB: several seconds
    task = DownloadTask()
    ended: list[bool] = []
    task.taskTerminated.connect(lambda: ended.append(False))
    task.taskCompleted.connect(lambda: ended.append(True))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 30
    while task.progress() < 5 and not ended and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    task.cancel()
    wait_for_task(task, 30)
    assert ended == [False] and task.canceled and task.path is None
    dest = packaged / model_store.DEFAULT_MODEL_NAME
    assert not dest.exists() and partial_path(dest).is_file()


@pytest.mark.qgis
def test_a_detection_waits_for_its_download_subtask(
    packaged: Path, server: Server, tmp_path: Path, qgis_new_project: None
) -> None:
    """The dock's wiring: model_for_run names the file, attach_download makes the run wait for it."""
    from qgis.core import QgsApplication, QgsTask

    from qgis_clipcd.models.download_task import attach_download

    model, missing = model_store.model_for_run(None)
    assert missing
    seen: dict[str, object] = {}

    class Detect(QgsTask):  # stands in for DetectTask: checks the model is there when it runs
        def run(self) -> bool:
            seen["verified"] = model_store.is_verified(Path(model))
            return True

    task = Detect("detect", QgsTask.Flag.CanCancel)
    download_task = attach_download(task)
    QgsApplication.taskManager().addTask(task)
    assert wait_for_task(task, 60)
    assert seen == {"verified": True} and download_task.path == Path(model)

    failing = Detect("detect", QgsTask.Flag.CanCancel)  # a failed download cancels the run
    server.served.status = 404
    Path(model).unlink()
    model_store._verified.clear()
    seen.clear()
    failed = attach_download(failing)
    ended: list[str] = []
    failing.taskTerminated.connect(lambda: ended.append("terminated"))
    QgsApplication.taskManager().addTask(failing)
    assert wait_for_task(failing, 60)
    assert ended == ["terminated"] and seen == {} and "404" in failed.error


@pytest.mark.qgis
def test_the_algorithm_downloads_the_default_model_when_absent(
    packaged: Path, server: Server, tmp_path: Path, provider: object
) -> None:
    import processing
    from qgis.core import QgsProcessingFeedback, QgsVectorLayer

    class Recorder(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def setProgressText(self, text: str) -> None:
            self.lines.append(text)
            super().setProgressText(text)

        def pushInfo(self, text: str) -> None:
            self.lines.append(text)
            super().pushInfo(text)

    before, after = write_pair(tmp_path / "rasters")
    feedback = Recorder()
    target = tmp_path / "changes.gpkg"
    result = processing.run(
        "clipcd:detect_change",
        {
            "BEFORE": str(before),
            "AFTER": str(after),
            "THRESHOLD": 0.01,
            "DEVICE": "cpu",
            "OUTPUT_POLYGONS": str(target),
        },
        feedback=feedback,
    )
    downloaded = packaged / model_store.DEFAULT_MODEL_NAME
    assert downloaded.read_bytes() == REAL_MODEL.read_bytes() and server.served.ranges == [None]
    assert any(line.startswith("Downloading the default model:") for line in feedback.lines)
    assert any(line.startswith("Engine command:") and str(downloaded) in line for line in feedback.lines)
    assert QgsVectorLayer(str(result["OUTPUT_POLYGONS"]), "changes", "ogr").featureCount() == result["POLYGONS"] >= 1


@pytest.mark.qgis
def test_the_algorithm_reports_a_failed_download(
    packaged: Path, server: Server, tmp_path: Path, provider: object
) -> None:
    import processing
    from qgis.core import QgsProcessingException

    server.served.status = 503
    before, after = write_pair(tmp_path / "rasters")
    params = {"BEFORE": str(before), "AFTER": str(after), "OUTPUT_POLYGONS": str(tmp_path / "changes.gpkg")}
    with pytest.raises(QgsProcessingException, match=r"503.*Model file"):
        processing.run("clipcd:detect_change", params)
    assert not (tmp_path / "changes.gpkg").exists()


@pytest.mark.qgis
def test_the_dock_reports_a_failed_first_download(
    packaged: Path, server: Server, tmp_path: Path, qgis_iface, qgis_new_project: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packaged plugin with no model and no internet: the run ends with the download's error, not a cancel."""
    from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsSettings

    from qgis_clipcd.detection import task as task_module
    from qgis_clipcd.dock.widget import ClipCDDock

    ran: list[object] = []
    monkeypatch.setattr(task_module, "find_python", lambda: ran.append("python") or "python3")
    QgsSettings().remove("clipcd/model")
    QgsSettings().remove("clipcd/output")
    server.served.status = 404
    dock = ClipCDDock(qgis_iface, check_engine=False)
    assert "downloaded on the first run" in dock.form.model_summary.text()
    before, after = write_pair(tmp_path)
    layers = [QgsRasterLayer(str(path), path.stem) for path in (before, after)]
    QgsProject.instance().addMapLayers(layers)
    dock.form.before.setLayer(layers[0])
    dock.form.after.setLayer(layers[1])
    dock.start()
    running = dock.task
    assert running is not None and running.download is not None
    assert running.params.model == str(packaged / model_store.DEFAULT_MODEL_NAME) and running.params.threshold is None
    out = Path(running.params.out_dir)
    assert wait_for_task(running, 60)
    assert ran == []  # the engine never started
    assert dock.status.text().startswith("The default model could not be downloaded") and "404" in dock.status.text()
    messages = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert len(messages) == 1 and "404" in messages[0]
    assert not out.exists()
