"""The engine panel at the top of the dock: is the engine there, install it, diagnostics.

It checks the engine in a background task as soon as it is created (QGIS never waits on it) and
emits ``statusChanged`` with the :class:`EngineStatus` each time a check ends: the dock fills its
device picker from ``status.device_choices()`` and enables Run when ``status.ok``.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt, pyqtSignal, pyqtSlot
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from qgis_clipcd.dock.clip_dialog import ClipWeightsDialog
from qgis_clipcd.dock.diagnostics import DiagnosticsDialog
from qgis_clipcd.engine import installer
from qgis_clipcd.engine.check import EngineCheckTask, EngineStatus
from qgis_clipcd.engine.install_task import InstallTask
from qgis_clipcd.engine.pip_run import InstallResult
from qgis_clipcd.engine.worker import WorkerResult
from qgis_clipcd.models.clip_weights import ClipTask

CHECKING = "Engine: checking…"


class EnginePanel(QWidget):  # type: ignore[misc]
    """Engine status line, the install commands when it is missing, "Install backend" and "Diagnostics".

    Args:
        parent: The parent widget (the dock's body).
        start: Check the engine now (tests may call :meth:`refresh` themselves).
    """

    #: Emitted with the EngineStatus after each check (main thread).
    statusChanged = pyqtSignal(object)
    #: Emitted with the name of the CLIP weights the engine labels with (None: none present), after
    #: each working check and each listing in the CLIP weights dialog.
    clipChanged = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None, *, start: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("ClipCDEnginePanel")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.status: EngineStatus | None = None
        self.check_task: EngineCheckTask | None = None
        self.install_task: InstallTask | None = None
        self.dialog: DiagnosticsDialog | None = None
        self.clip_dialog: ClipWeightsDialog | None = None
        self.clip_task: ClipTask | None = None
        self._build()
        if start:
            self.refresh()

    def _build(self) -> None:
        self.label = QLabel(CHECKING, self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command = QPlainTextEdit(self)
        self.command.setReadOnly(True)
        self.command.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.command.setMaximumHeight(7 * self.command.fontMetrics().lineSpacing())
        self.command.setVisible(False)
        self.install_button = QPushButton("Install backend", self)
        self.install_button.setToolTip(
            "Create a private Python environment for the engine and install its requirements"
        )
        self.diagnostics_button = QPushButton("Diagnostics", self)
        self.clip_button = QPushButton("CLIP weights", self)
        self.clip_button.setToolTip("Download, add or remove the CLIP weights that label changes and drive prompts")
        self.recheck_button = QPushButton("Check again", self)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel", self)
        self.install_note = QLabel(self)
        self.install_note.setWordWrap(True)
        self.install_note.setTextFormat(Qt.TextFormat.PlainText)
        for widget in (self.progress, self.cancel_button, self.install_note):
            widget.setVisible(False)

        buttons = QHBoxLayout()
        for button in (self.install_button, self.clip_button, self.diagnostics_button, self.recheck_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.label, self.command):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addLayout(progress_row)
        layout.addWidget(self.install_note)

        self.install_button.clicked.connect(self._install_clicked)
        self.diagnostics_button.clicked.connect(self.show_diagnostics)
        self.clip_button.clicked.connect(self.show_clip_weights)
        self.recheck_button.clicked.connect(self.refresh)
        self.cancel_button.clicked.connect(self.cancel_install)
        self._update_buttons()

    # -- checking -----------------------------------------------------------------------------
    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def refresh(self) -> EngineCheckTask:
        """Check the engine again in the background (a check already running is reused)."""
        if self.check_task is not None:
            return self.check_task
        self.label.setText(CHECKING)
        self.check_task = EngineCheckTask()
        self.check_task.checked.connect(self.show_status)
        QgsApplication.taskManager().addTask(self.check_task)
        self._update_buttons()
        return self.check_task

    @pyqtSlot(object)  # type: ignore[misc, untyped-decorator]
    def show_status(self, status: EngineStatus) -> None:
        """Show a finished check (this panel's, or the one the plugin ran on load) and pass it on."""
        self.status = status
        self.check_task = None
        self.label.setText(status.summary())
        self.label.setToolTip("\n".join(status.searched))
        self.command.setPlainText(status.fix)
        self.command.setVisible(not status.ok and bool(status.fix))
        self._update_buttons()
        self.statusChanged.emit(status)
        if status.ok:
            self.list_clip()

    def _update_buttons(self) -> None:
        busy = self.check_task is not None or self.install_task is not None
        problem = self.status.install_problem if self.status is not None else ""
        self.install_button.setEnabled(not busy and self.status is not None and not problem)
        self.install_button.setToolTip(
            problem or "Create a private Python environment for the engine and install its requirements"
        )
        self.install_button.setText(
            "Reinstall backend" if self.status is not None and self.status.ok else "Install backend"
        )
        self.recheck_button.setEnabled(not busy)
        engine = self.status is not None and self.status.ok and self.status.python is not None
        self.clip_button.setEnabled(engine)
        self.clip_button.setToolTip(
            "Download, add or remove the CLIP weights that label changes and drive prompts"
            if engine
            else "Needs the engine: install it first"
        )

    # -- installing ---------------------------------------------------------------------------
    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def _install_clicked(self) -> None:
        self.install()

    def install(self, confirm: bool = True) -> InstallTask | None:
        """Install the engine as the last check planned it, after the user agrees (``confirm``)."""
        status = self.status
        requirements = installer.requirements_file()
        if status is None or status.base_python is None or requirements is None:
            problem = (status.install_problem if status else "") or "The engine check has not finished yet."
            self.install_note.setText(problem)
            self.install_note.setVisible(True)
            return None
        venv = installer.venv_dir()
        plan = installer.install_plan(status.base_python, venv, requirements, status.index_url)
        if confirm and not self._confirm(venv, status, plan):
            return None
        return self.start_install(plan, installer.venv_python(venv), venv)

    def _confirm(self, venv: Path, status: EngineStatus, plan: list[list[str]]) -> bool:
        cuda = status.index_url is not None and "/cu" in status.index_url
        size = "about 3 GB to download (CUDA build)" if cuda else "under 1 GB to download"
        source = status.index_url or "PyPI"
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Install the ClipCD engine")
        box.setText(
            f"ClipCD will create a private Python environment in\n{venv}\nand install PyTorch from {source} "
            f"and the engine's other requirements from PyPI: {size}, several minutes.\n\n"
            "QGIS stays usable meanwhile and you can cancel. Continue?"
        )
        box.setDetailedText(installer.command_text(plan))
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        return bool(box.exec() == QMessageBox.StandardButton.Yes)

    def start_install(self, plan: list[list[str]], python: Path, venv: Path | None = None) -> InstallTask:
        """Run ``plan`` in the background with a progress bar and Cancel; re-check when it succeeded."""
        task = InstallTask(plan, python, venv)
        task.status.connect(self._install_status)
        task.progressChanged.connect(self._install_progress)
        task.installed.connect(self._installed)
        self.install_task = task
        self.progress.setValue(0)
        self.install_note.setText("Starting the installation…")
        for widget in (self.progress, self.cancel_button, self.install_note):
            widget.setVisible(True)
        self.cancel_button.setEnabled(True)
        self._update_buttons()
        QgsApplication.taskManager().addTask(task)
        return task

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def cancel_install(self) -> None:
        """Stop the running installation (its current step is terminated)."""
        if self.install_task is not None:
            self.cancel_button.setEnabled(False)
            self.install_note.setText("Canceling…")
            self.install_task.cancel()

    @pyqtSlot(str)  # type: ignore[misc, untyped-decorator]
    def _install_status(self, message: str) -> None:
        if self.install_task is not None and not self.install_task.isCanceled():
            self.install_note.setText(message)

    @pyqtSlot(float)  # type: ignore[misc, untyped-decorator]
    def _install_progress(self, value: float) -> None:
        self.progress.setValue(round(value))

    @pyqtSlot(object)  # type: ignore[misc, untyped-decorator]
    def _installed(self, result: InstallResult) -> None:
        self.install_task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.install_note.setText(result.message)
        self.install_note.setVisible(True)
        self._update_buttons()
        if result.ok:
            self.refresh()

    # -- diagnostics --------------------------------------------------------------------------
    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def show_diagnostics(self) -> DiagnosticsDialog:
        """Open the diagnostics (non-modal; the doctor runs in the background)."""
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = DiagnosticsDialog(self.status, self)
        self.dialog.show()
        return self.dialog

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def show_clip_weights(self) -> ClipWeightsDialog | None:
        """Open the CLIP weights dialog (non-modal; it lists through the engine in the background)."""
        if self.status is None or not self.status.ok or self.status.python is None:
            return None
        if self.clip_dialog is not None:
            self.clip_dialog.close()
            self.clip_dialog.deleteLater()
        self.clip_dialog = ClipWeightsDialog(self.status.python, self)
        self.clip_dialog.listed.connect(self.clipChanged.emit)
        self.clip_dialog.show()
        return self.clip_dialog

    def list_clip(self) -> ClipTask | None:
        """Ask the engine which CLIP weights it labels with (in the background); ``clipChanged`` says."""
        if self.status is None or not self.status.ok or self.status.python is None:
            return None
        task = ClipTask(self.status.python, "list")
        task.done.connect(self._clip_listed)  # a bound slot: disconnected if the panel goes first
        self.clip_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    @pyqtSlot(object)  # type: ignore[misc, untyped-decorator]
    def _clip_listed(self, result: WorkerResult) -> None:
        self.clip_task = None
        self.clipChanged.emit(result.summary.get("labels_with") if result.ok else None)
