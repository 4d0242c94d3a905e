"""The engine check, the install task, diagnostics and the dock's engine panel, in real QGIS with real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugin.helpers import wait_for_task
from tests.plugin.wheels import MODULE, tiny_requirements

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.dock import diagnostics  # noqa: E402
from qgis_clipcd.dock.diagnostics import RUNNING, DiagnosticsDialog  # noqa: E402
from qgis_clipcd.dock.engine_panel import CHECKING, EnginePanel  # noqa: E402
from qgis_clipcd.engine import check as engine_check  # noqa: E402
from qgis_clipcd.engine import environment, installer  # noqa: E402
from qgis_clipcd.engine.check import EngineCheckTask, EngineStatus, check_engine  # noqa: E402
from qgis_clipcd.engine.install_task import InstallTask  # noqa: E402

TORCH = "2.14.1"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh environment without torch (and without pip, to be quick)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(installer.venv_python(venv))


@pytest.fixture
def settings(qgis_app: object):
    """QgsSettings with clipcd/python restored after the test."""
    settings = qgis_core.QgsSettings()
    saved = settings.value(environment.SETTINGS_KEY, None)
    yield settings
    if saved is None:
        settings.remove(environment.SETTINGS_KEY)
    else:
        settings.setValue(environment.SETTINGS_KEY, saved)
    environment.can_run_backend.cache_clear()


def tiny_plan(tmp_path: Path) -> tuple[list[list[str]], Path]:
    wheels = tmp_path / "wheels"
    venv = tmp_path / "venv"
    plan = installer.install_plan(
        sys.executable,
        venv,
        tiny_requirements(wheels),
        None,
        pip_options=["--no-index", "--find-links", str(wheels)],
        check_modules=(MODULE,),
    )
    return plan, venv


def start(task: object) -> object:
    qgis_core.QgsApplication.taskManager().addTask(task)
    return task


# -- the check ---------------------------------------------------------------------------------------


def test_the_repository_venv_runs_the_engine(monkeypatch: pytest.MonkeyPatch, qgis_app: object) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    status = check_engine()
    assert status.ok, status.message
    assert status.python == sys.executable and status.torch.startswith(TORCH)
    assert status.fix == "" and status.install_problem == "" and status.base_python is not None
    expected = "CUDA: " + ", ".join(status.devices) if status.cuda else "CPU only"
    assert status.summary() == f"Engine: {sys.executable} — torch {status.torch}, {expected}"
    assert status.device_choices()[:2] == ("auto", "cpu")
    assert ("cuda" in status.device_choices()) == status.cuda
    assert any(line.startswith("$CLIPCD_PYTHON: ") and sys.executable in line for line in status.searched)


def test_a_python_without_torch_gets_the_install_commands(
    monkeypatch: pytest.MonkeyPatch, bare_python: str, qgis_app: object
) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", bare_python)
    status = check_engine()
    assert not status.ok and status.python == bare_python
    assert "it lacks torch, open_clip, rasterio." in status.message and bare_python in status.message
    assert status.summary().startswith("⚠") and status.message.endswith("Install it with the button below or run:")
    assert status.base_python is not None and status.install_problem == ""
    venv = installer.venv_dir()
    assert str(venv) in status.fix and "-m venv" in status.fix
    assert "requirements.txt" in status.fix and "import torch, open_clip, rasterio" in status.fix
    if status.gpu is None:
        assert status.index_url == "https://download.pytorch.org/whl/cpu" and "--index-url" in status.fix


def test_a_broken_torch_is_named_with_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, qgis_app: object
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = installer.venv_python(venv)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    (Path(site) / "torch").mkdir()
    (Path(site) / "torch" / "__init__.py").write_text("raise ImportError('DLL load failed while importing _C')\n")
    monkeypatch.setenv("CLIPCD_PYTHON", str(python))
    status = check_engine()
    assert not status.ok
    assert "it lacks torch (ImportError: DLL load failed while importing _C), open_clip, rasterio." in status.message


def test_the_private_environment_lives_in_the_qgis_profile(qgis_app: object) -> None:
    profile = Path(qgis_core.QgsApplication.qgisSettingsDirPath())
    assert installer.venv_dir() == profile / "clipcd" / "venv"


def test_summary_names_the_device_and_an_unused_gpu() -> None:
    base = {"python": "/env/bin/python", "ok": True, "torch": "2.14.1+cpu"}
    assert EngineStatus(**base).summary() == "Engine: /env/bin/python — torch 2.14.1+cpu, CPU only"
    cuda = EngineStatus(**base, cuda=True, devices=("NVIDIA H100",))
    assert cuda.summary().endswith("CUDA: NVIDIA H100") and cuda.device_choices() == ("auto", "cpu", "cuda")
    assert EngineStatus(**base, mps=True).device_choices() == ("auto", "cpu", "mps")
    gpu = installer.CudaInfo("NVIDIA RTX A4000", "580.1", "8.6")
    unused = EngineStatus(**base, gpu=gpu, index_url=installer.torch_index_url(gpu, "linux"))
    assert "the NVIDIA RTX A4000 could be used: Reinstall backend" in unused.summary()
    assert EngineStatus(python=None, ok=False, message="⚠ none").summary() == "⚠ none"


def test_no_python_at_all(monkeypatch: pytest.MonkeyPatch, qgis_app: object) -> None:
    monkeypatch.setattr(engine_check, "find_python", lambda: None)
    status = check_engine()
    assert not status.ok and status.python is None
    assert status.message.startswith("⚠ No Python with torch, open_clip, rasterio was found.")
    assert "pip install" in status.fix


def test_check_task_emits_the_status(monkeypatch: pytest.MonkeyPatch, bare_python: str, qgis_app: object) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", bare_python)
    seen: list[EngineStatus] = []
    task = EngineCheckTask()
    task.checked.connect(seen.append)
    start(task)
    assert wait_for_task(task)
    assert len(seen) == 1 and not seen[0].ok and seen[0].python == bare_python


# -- installing --------------------------------------------------------------------------------------


def test_install_task_points_the_settings_at_the_new_environment(tmp_path: Path, settings: object) -> None:
    settings.setValue(environment.SETTINGS_KEY, "/old/python")
    environment.can_run_backend("/old/python")
    assert environment.can_run_backend.cache_info().currsize > 0
    plan, venv = tiny_plan(tmp_path)
    python = installer.venv_python(venv)
    task = InstallTask(plan, python, venv)
    progress: list[float] = []
    results: list[object] = []
    task.progressChanged.connect(progress.append)
    task.installed.connect(results.append)
    start(task)
    assert wait_for_task(task)
    assert task.result is not None and task.result.ok, (task.result.message, task.result.log)
    assert settings.value(environment.SETTINGS_KEY) == str(python)
    assert environment.can_run_backend.cache_info().currsize == 0
    assert results == [task.result] and str(python) in task.result.message
    assert progress and max(progress) == pytest.approx(100.0)


def test_canceled_install_leaves_the_settings_alone(tmp_path: Path, settings: object) -> None:
    settings.setValue(environment.SETTINGS_KEY, "/old/python")
    plan = [[sys.executable, "-c", "print('Collecting x', flush=True); import time; time.sleep(60)"]]
    task = InstallTask(plan, tmp_path / "venv" / "bin" / "python")
    start(task)
    deadline = time.monotonic() + 30
    while task.progress() <= 0 and time.monotonic() < deadline:  # wait until the step really runs
        qgis_core.QgsApplication.processEvents()
        time.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    assert wait_for_task(task, timeout=30)
    assert time.monotonic() - started < 15
    assert task.result is not None and task.result.canceled and "canceled" in task.result.message.lower()
    assert settings.value(environment.SETTINGS_KEY) == "/old/python"


def test_failed_environment_creation_leaves_no_folder(tmp_path: Path, settings: object) -> None:
    venv = tmp_path / "venv"
    plan = [[sys.executable, "-c", "import os, sys; os.makedirs(sys.argv[1]); sys.exit(1)", str(venv)]]
    task = InstallTask(plan, installer.venv_python(venv), venv)
    start(task)
    assert wait_for_task(task)
    assert task.result is not None and not task.result.ok and task.result.failed_step == 0
    assert not venv.exists()


# -- diagnostics -------------------------------------------------------------------------------------


def test_diagnostics_show_the_doctor_and_copy_it(monkeypatch: pytest.MonkeyPatch, qgis_app: object) -> None:
    from qgis.PyQt.QtWidgets import QApplication

    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    dialog = DiagnosticsDialog()
    assert RUNNING in dialog.report() and "QGIS           3." in dialog.report()
    assert dialog.task is not None and wait_for_task(dialog.task)
    report = dialog.report()
    assert RUNNING not in report
    assert f"torch       {TORCH}" in report and "-m backend doctor" in report and "exit code 0" in report
    assert "ClipCD plugin" in report and "Qt             5." in report and "clipcd/python" in report
    QApplication.clipboard().clear()
    dialog.copy_button.click()
    assert QApplication.clipboard().text() == report
    dialog.deleteLater()


def test_diagnostics_without_an_engine_say_where_they_looked(monkeypatch: pytest.MonkeyPatch, qgis_app: object) -> None:
    monkeypatch.setattr(diagnostics, "find_python", lambda: None)
    dialog = DiagnosticsDialog(EngineStatus(python=None, ok=False, message="⚠ none"))
    assert dialog.task is not None and wait_for_task(dialog.task)
    report = dialog.report()
    assert "Looked at:" in report and "$CLIPCD_PYTHON" in report and "private environment" in report
    assert "-m venv" in report and "pip install" in report
    dialog.deleteLater()


# -- the panel ---------------------------------------------------------------------------------------


def wait_for_check(panel: EnginePanel) -> None:
    task = panel.check_task
    assert task is not None and wait_for_task(task)


def test_panel_shows_a_working_engine(monkeypatch: pytest.MonkeyPatch, qgis_app: object) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    panel = EnginePanel()
    seen: list[EngineStatus] = []
    panel.statusChanged.connect(seen.append)
    assert panel.label.text() == CHECKING and not panel.install_button.isEnabled()
    wait_for_check(panel)
    assert len(seen) == 1 and seen[0].ok and panel.status is seen[0]
    assert panel.label.text().startswith(f"Engine: {sys.executable} — torch {TORCH}")
    assert panel.command.isHidden() and panel.install_button.text() == "Reinstall backend"
    dialog = panel.show_diagnostics()
    assert dialog.isVisible() and dialog.status is seen[0]
    assert dialog.task is not None and wait_for_task(dialog.task)
    dialog.close()
    assert panel.clip_button.isEnabled()
    weights = panel.show_clip_weights()
    assert weights is not None and weights.isVisible() and weights.python == sys.executable
    assert weights.task is not None and wait_for_task(weights.task)
    assert weights.table.rowCount() >= 8
    weights.close()
    panel.deleteLater()


def test_panel_without_engine_shows_the_command_and_installs(
    monkeypatch: pytest.MonkeyPatch, bare_python: str, tmp_path: Path, settings: object
) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", bare_python)
    panel = EnginePanel()
    wait_for_check(panel)
    assert panel.status is not None and not panel.status.ok
    assert panel.label.text().startswith("⚠") and "Install it with the button below or run:" in panel.label.text()
    assert not panel.command.isHidden() and "-m venv" in panel.command.toPlainText()
    assert panel.install_button.isEnabled() and panel.install_button.text() == "Install backend"
    assert not panel.clip_button.isEnabled() and panel.show_clip_weights() is None

    plan, venv = tiny_plan(tmp_path)
    task = panel.start_install(plan, installer.venv_python(venv), venv)
    assert not panel.progress.isHidden() and not panel.cancel_button.isHidden()
    assert not panel.install_button.isEnabled()
    assert wait_for_task(task)
    assert panel.progress.isHidden() and panel.cancel_button.isHidden()
    assert "The engine was installed" in panel.install_note.text()
    assert settings.value(environment.SETTINGS_KEY) == str(installer.venv_python(venv))
    assert panel.check_task is not None, "a successful install checks the engine again"
    wait_for_check(panel)
    panel.deleteLater()


def test_install_button_runs_the_planned_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: object
) -> None:
    """Reinstall from a working engine: the plan is the installer's (made offline here), the venv the profile's."""
    from qgis_clipcd.dock import engine_panel

    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    wheels = tmp_path / "wheels"
    requirements = tiny_requirements(wheels)
    real_plan = installer.install_plan
    planned: list[tuple] = []

    def offline_plan(base: str, venv: Path, reqs: Path, index_url: str | None) -> list[list[str]]:
        planned.append((base, venv, reqs, index_url))
        options = ["--no-index", "--find-links", str(wheels)]
        return real_plan(base, venv, requirements, None, pip_options=options, check_modules=(MODULE,))

    monkeypatch.setattr(engine_panel.installer, "install_plan", offline_plan)
    monkeypatch.setattr(engine_panel.installer, "venv_dir", lambda: tmp_path / "profile" / "clipcd" / "venv")
    panel = EnginePanel(start=False)
    assert not panel.install_button.isEnabled(), "nothing to install with before a check"
    # a working engine as a check reports it (the check itself is tested above)
    panel.show_status(EngineStatus(python=sys.executable, ok=True, torch=TORCH, base_python=sys.executable))
    assert panel.install_button.isEnabled() and panel.install_button.text() == "Reinstall backend"
    task = panel.install(confirm=False)
    assert task is not None and wait_for_task(task)
    venv = tmp_path / "profile" / "clipcd" / "venv"
    assert planned == [(panel.status.base_python, venv, installer.requirements_file(), panel.status.index_url)]
    assert settings.value(environment.SETTINGS_KEY) == str(installer.venv_python(venv))
    assert "The engine was installed" in panel.install_note.text()
    wait_for_check(panel)
    panel.deleteLater()


def test_panel_cancel(monkeypatch: pytest.MonkeyPatch, bare_python: str, tmp_path: Path, settings: object) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", bare_python)
    panel = EnginePanel(start=False)
    plan = [[sys.executable, "-c", "print('Collecting x', flush=True); import time; time.sleep(60)"]]
    task = panel.start_install(plan, tmp_path / "venv" / "bin" / "python")
    deadline = time.monotonic() + 30
    while task.progress() <= 0 and time.monotonic() < deadline:
        qgis_core.QgsApplication.processEvents()
        time.sleep(0.05)
    panel.cancel_button.click()
    assert panel.install_note.text() == "Canceling…"
    assert wait_for_task(task, timeout=30)
    assert "canceled" in panel.install_note.text().lower()
    assert panel.progress.isHidden() and panel.check_task is None
    panel.deleteLater()
