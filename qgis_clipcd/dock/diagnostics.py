"""The "Diagnostics" dialog: the plugin's side (QGIS, Qt, OS, paths) and ``python -m backend doctor``.

The doctor runs in the engine's Python as a child process, in a background task; the dialog shows
"Running diagnostics…" meanwhile. Without an engine Python it shows where it looked and the commands
that install one. Everything is plain text with a Copy button, for bug reports.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.
"""

from __future__ import annotations

import os
import platform
import subprocess  # nosec B404
import sys

from qgis.core import Qgis, QgsTask
from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR, pyqtSignal, pyqtSlot
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qgis_clipcd.engine import installer
from qgis_clipcd.engine.check import EngineStatus, searched_pythons, with_install_advice
from qgis_clipcd.engine.environment import (
    PYTHON_ENV,
    SETTINGS_KEY,
    configured_python,
    find_python,
    qgis_python,
    run_engine_python,
)
from qgis_clipcd.metadata import backend_root, metadata, plugin_root

RUNNING = "Running diagnostics…"
_DOCTOR_TIMEOUT = 300.0
_EXIT_MEANING = {0: "everything the engine needs is present", 2: "something the engine needs is missing (above)"}


def plugin_report(status: EngineStatus | None = None) -> str:
    """The plugin's side: versions, OS, where the plugin and the engine's Python are."""
    gpu = status.gpu if status is not None else None
    driver = f"{gpu.name}, driver {gpu.driver} ({gpu.count} GPU(s))" if gpu else "no NVIDIA driver found (nvidia-smi)"
    lines = [
        f"ClipCD plugin  {metadata().get('version', 'unknown')} at {plugin_root()}",
        f"backend folder {backend_root() or 'MISSING'}",
        f"QGIS           {Qgis.QGIS_VERSION}",
        f"Qt             {QT_VERSION_STR}, PyQt {PYQT_VERSION_STR}",
        f"QGIS's Python  {sys.version.split()[0]} ({qgis_python() or sys.executable})",
        f"OS             {platform.platform()} ({platform.machine()})",
        f"{SETTINGS_KEY:<14} {configured_python() or 'not set'}",
        f"${PYTHON_ENV:<13} {os.environ.get(PYTHON_ENV) or 'not set'}",
        f"private env    {installer.venv_dir()}",
        f"NVIDIA         {driver}",
    ]
    if status is not None:
        lines.append(f"engine status  {status.summary()}")
    return "\n".join(lines)


def engine_report(python: str | None) -> str:
    """What ``python -m backend doctor`` prints (blocking); without ``python``, where it looked and how to install."""
    python = python or find_python()
    if python is None:
        advice = with_install_advice(EngineStatus(python=None, ok=False, gpu=installer.detect_cuda()), "")
        return "\n".join(
            [
                "No Python with torch, open_clip and rasterio was found. Looked at:",
                *("  " + line for line in searched_pythons()),
                "",
                advice.install_problem or 'Install it with "Install backend" in the ClipCD dock, or run:',
                advice.fix,
            ]
        )
    command = [python, "-m", "backend", "doctor"]
    try:
        done = run_engine_python(command, _DOCTOR_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"$ {' '.join(command)}\ncould not run it: {exc}"
    meaning = _EXIT_MEANING.get(done.returncode, "the doctor itself failed (its error is above)")
    parts = [
        f"$ {' '.join(command)}",
        done.stdout.rstrip(),
        done.stderr.rstrip(),
        f"exit code {done.returncode}: {meaning}",
    ]
    return "\n".join(part for part in parts if part)


class DoctorTask(QgsTask):  # type: ignore[misc]
    """Runs :func:`engine_report` in the background; ``done`` carries the text (main thread)."""

    done = pyqtSignal(str)

    def __init__(self, python: str | None) -> None:
        super().__init__("ClipCD: diagnostics", QgsTask.Flag.CanCancel)
        self.python = python
        self.report = ""

    def run(self) -> bool:
        """Task thread: run the doctor; never raises."""
        try:
            self.report = engine_report(self.python)
        except Exception as exc:
            self.report = f"The diagnostics failed: {type(exc).__name__}: {exc}"
        return True

    def finished(self, result: bool) -> None:
        """Main thread: hand the report on."""
        self.done.emit(self.report or "The diagnostics were canceled.")


class DiagnosticsDialog(QDialog):  # type: ignore[misc]
    """Read-only report with Copy and Close; the engine part fills in when the doctor is done.

    Args:
        status: The latest engine check (its Python is used; None looks it up in the background).
        parent: The parent widget.
        start: Start the doctor now (tests may start it themselves with :meth:`start`).
    """

    def __init__(
        self, status: EngineStatus | None = None, parent: QWidget | None = None, *, start: bool = True
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("ClipCD diagnostics")
        self.setObjectName("ClipCDDiagnostics")
        self.resize(760, 520)
        self.status = status
        self.task: DoctorTask | None = None
        self.plugin_part = plugin_report(status)
        self.engine_part = RUNNING

        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(self)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the whole report to the clipboard (for a bug report)")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self._show()
        if start:
            self.start()

    def start(self) -> DoctorTask:
        """Run the doctor in a background task (the task manager owns it)."""
        from qgis.core import QgsApplication

        self.engine_part = RUNNING
        self._show()
        self.task = DoctorTask(self.status.python if self.status is not None else None)
        self.task.done.connect(self._doctor_done)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def report(self) -> str:
        """The whole report as shown."""
        return str(self.text.toPlainText())

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def copy(self) -> None:
        """Put the report on the clipboard."""
        QApplication.clipboard().setText(self.report())

    @pyqtSlot(str)  # type: ignore[misc, untyped-decorator]
    def _doctor_done(self, text: str) -> None:
        self.engine_part = text
        self.task = None
        self._show()

    def _show(self) -> None:
        self.text.setPlainText(f"{self.plugin_part}\n\nEngine\n{self.engine_part}\n")
