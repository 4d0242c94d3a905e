"""DetectTask runs the worker off the main thread, reports progress, cancels cleanly and publishes."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from tests.plugin.helpers import raster_pair, wait_for_task

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.detection.task import DetectTask  # noqa: E402
from qgis_clipcd.engine.worker import WorkerResult  # noqa: E402
from qgis_clipcd.params import RunParams  # noqa: E402

CRITICAL = qgis_core.Qgis.MessageLevel.Critical
SUCCESS = qgis_core.Qgis.MessageLevel.Success


class FakeWorker:
    """Stands in for the subprocess: reports progress, then returns ``result`` (or waits for a cancel)."""

    def __init__(self, result: WorkerResult | None = None, *, wait_for_cancel: bool = False) -> None:
        self.result = result
        self.wait_for_cancel = wait_for_cancel
        self.thread: threading.Thread | None = None

    def run(self, params, python, on_progress, is_canceled) -> WorkerResult:
        self.thread = threading.current_thread()
        on_progress(0.25, "tiles 1/4")
        if self.wait_for_cancel:
            Path(params.out_dir, ".staging").mkdir()
            deadline = time.monotonic() + 10
            while not is_canceled() and time.monotonic() < deadline:
                time.sleep(0.01)
            return WorkerResult(ok=False, error_kind="canceled", message="Canceled by the user.", exit_code=130)
        assert self.result is not None
        return self.result


def start(task: DetectTask) -> DetectTask:
    qgis_core.QgsApplication.taskManager().addTask(task)
    return task


def groups() -> list[str]:
    return [group.name() for group in qgis_core.QgsProject.instance().layerTreeRoot().findGroups()]


def test_success_adds_a_styled_group_from_the_task_thread(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    from backend.inference.pipeline import detect
    from backend.params import DetectParams
    from tests.test_pipeline import difference_model, square_pair

    before, after = square_pair(tmp_path)
    done = detect(DetectParams(before=before, after=after, out_dir=tmp_path / "run"), loaded=difference_model())
    outputs = {name: str(path) for name, path in done.outputs.items()}
    worker = FakeWorker(WorkerResult(ok=True, outputs=outputs, summary={"polygons": 1, "changed_area_m2": 1200.0}))
    params = RunParams(before=str(before), after=str(after), out_dir=str(tmp_path / "run"))
    progress: list[float] = []
    task = DetectTask(params, python="python3", iface=qgis_iface, worker=worker)
    task.progressChanged.connect(progress.append)

    assert wait_for_task(start(task), timeout=30)
    assert worker.thread is not threading.main_thread()
    assert 25.0 in progress
    assert groups() == ["ClipCD — run"]
    changes = task.layers[0]
    assert changes.featureCount() == 1 and changes.renderer().symbol().color().alpha() < 255
    assert any("1 change polygon" in m for m in qgis_iface.messageBar().get_messages(SUCCESS))


def test_a_failure_reports_the_message_and_adds_nothing(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    failed = WorkerResult(ok=False, error_kind="ModelFileError", message="x.tif is not a model", log=["a", "b"])
    params = RunParams(before="a.tif", after="b.tif", out_dir=str(tmp_path / "out"))
    task = DetectTask(params, python="python3", iface=qgis_iface, worker=FakeWorker(failed))

    assert wait_for_task(start(task), timeout=30)
    assert qgis_iface.messageBar().get_messages(CRITICAL) == ["Change detection failed:x.tif is not a model"]
    assert groups() == [] and not qgis_core.QgsProject.instance().mapLayers()


def test_cancel_ends_the_task_and_removes_a_temporary_folder(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    out = tmp_path / "clipcd-tmp"
    out.mkdir()
    params = RunParams(before="a.tif", after="b.tif", out_dir=str(out))
    task = DetectTask(
        params,
        python="python3",
        iface=qgis_iface,
        worker=FakeWorker(wait_for_cancel=True),
        remove_out_dir_on_failure=True,
    )
    task.progressChanged.connect(lambda value: task.cancel())

    assert wait_for_task(start(task), timeout=30)
    assert not out.exists()
    assert not qgis_core.QgsApplication.taskManager().activeTasks()
    assert qgis_iface.messageBar().get_messages(CRITICAL) == []
    assert groups() == []


# -- the real worker subprocess (python -m backend detect --json-progress, the default model) -------------


def real_task(params: RunParams, iface, **kw) -> DetectTask:
    return start(DetectTask(params, python=sys.executable, iface=iface, **kw))


@pytest.mark.slow
def test_real_run_adds_a_styled_polygon_layer(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    before, after = raster_pair(tmp_path)
    params = RunParams(before=str(before), after=str(after), out_dir=str(tmp_path / "out"), device="cpu")
    task = real_task(params, qgis_iface)

    assert wait_for_task(task, timeout=300), "the worker did not finish in 5 minutes"
    assert task.result is not None and task.result.ok, task.result
    root = qgis_core.QgsProject.instance().layerTreeRoot()
    group = root.findGroup("ClipCD — out")
    assert group is not None
    polygons = [node.layer() for node in group.findLayers() if isinstance(node.layer(), qgis_core.QgsVectorLayer)]
    assert len(polygons) == 1 and polygons[0].isValid()
    assert polygons[0].geometryType() == qgis_core.QgsWkbTypes.GeometryType.PolygonGeometry
    assert polygons[0].renderer().symbol().color().alpha() < 255


@pytest.mark.slow
def test_real_cancel_mid_run_leaves_no_outputs(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    before, after = raster_pair(tmp_path, size=(1536, 1536))
    out = tmp_path / "out"
    out.mkdir()
    params = RunParams(before=str(before), after=str(after), out_dir=str(out), device="cpu")
    task = real_task(params, qgis_iface)
    task.progressChanged.connect(lambda value: task.cancel() if value > 0 else None)

    assert wait_for_task(task, timeout=300)
    assert task.result is not None and task.result.error_kind == "canceled", task.result
    assert list(out.iterdir()) == []
    assert not qgis_core.QgsApplication.taskManager().activeTasks()
    assert not qgis_core.QgsProject.instance().mapLayers()


@pytest.mark.slow
def test_real_worker_failure_goes_to_the_message_bar(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    before, after = raster_pair(tmp_path)
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("not a model")
    params = RunParams(before=str(before), after=str(after), out_dir=str(tmp_path / "out"), model=str(bogus))
    task = real_task(params, qgis_iface)

    assert wait_for_task(task, timeout=300)
    messages = qgis_iface.messageBar().get_messages(CRITICAL)
    assert len(messages) == 1 and messages[0].startswith("Change detection failed:") and "bogus" in messages[0]
    assert not qgis_core.QgsProject.instance().mapLayers()


def test_a_worker_killed_mid_run_is_an_error_and_qgis_lives_on(tmp_path: Path, qgis_iface, qgis_new_project) -> None:
    """The engine loads its model, then the process is SIGKILLed (as the out-of-memory killer would)."""
    python = tmp_path / "python-that-dies"
    python.write_text(
        "#!/bin/sh\n"
        f'exec "{sys.executable}" -c "'
        "import os, signal, runpy, backend.inference.model_source as source; "
        "load = source.resolve; "
        "source.resolve = lambda *a, **k: (load(*a, **k), os.kill(os.getpid(), signal.SIGKILL)); "
        # sys.argv is ['-c', '-m', 'backend', 'detect', ...]: drop '-m backend'
        "import sys; sys.argv = ['backend', *sys.argv[3:]]; runpy.run_module('backend', run_name='__main__')"
        '" "$@"\n'
    )
    python.chmod(0o755)
    before, after = raster_pair(tmp_path)
    out = tmp_path / "out"
    params = RunParams(before=str(before), after=str(after), out_dir=str(out), device="cpu")
    task = start(DetectTask(params, python=str(python), iface=qgis_iface, remove_out_dir_on_failure=True))

    assert wait_for_task(task, timeout=300)
    assert task.result is not None and task.result.exit_code == -9 and task.result.error_kind == "crashed"
    messages = qgis_iface.messageBar().get_messages(CRITICAL)
    assert len(messages) == 1 and "killed by signal 9" in messages[0] and "memory" in messages[0]
    assert not out.exists() and not qgis_core.QgsProject.instance().mapLayers()
    alive = qgis_core.QgsRasterLayer(str(before), "still alive")  # QGIS carries on
    assert alive.isValid() and qgis_core.QgsProject.instance().addMapLayer(alive) is not None
