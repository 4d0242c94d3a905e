"""The ClipCD dock: pick two dates, a model and options, run in the background, see the result."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from qgis_clipcd.detection.layer_export import ExportError
from qgis_clipcd.detection.run_inputs import PreparedRun, prepare_run
from qgis_clipcd.detection.task import labels_text
from qgis_clipcd.dock.engine_panel import EnginePanel
from qgis_clipcd.dock.fields import check_pair
from qgis_clipcd.dock.form import InputsForm
from qgis_clipcd.models.download_task import attach_download
from qgis_clipcd.params import RunParams


class ClipCDDock(QgsDockWidget):  # type: ignore[misc]
    """Dock widget for one change detection run at a time."""

    def __init__(self, iface: Any, parent: QWidget | None = None, *, check_engine: bool = True) -> None:
        """Build the dock; ``check_engine`` starts the background check of the engine's Python."""
        super().__init__("ClipCD change detection", parent)
        self.setObjectName("ClipCDDock")
        self.setMinimumWidth(360)
        self.iface = iface
        self.task: Any = None
        self.engine_status: Any = None
        self._build(check_engine)
        self.form.before.layerChanged.connect(self._check)
        self.form.after.layerChanged.connect(self._check)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_command)
        self.engine.statusChanged.connect(self._engine_checked)
        self.engine.clipChanged.connect(self.form.set_clip)
        self._check()

    def _build(self, check_engine: bool) -> None:
        body = QWidget(self)
        self.engine = EnginePanel(body, start=check_engine)
        self.form = InputsForm(self.iface, body)
        self.run_button = QPushButton("Run", body)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setEnabled(False)
        self.copy_button = QPushButton("Copy as command", body)
        self.copy_button.setToolTip("Copy the equivalent `python -m backend detect` command to the clipboard")
        buttons = QHBoxLayout()
        for button in (self.run_button, self.cancel_button, self.copy_button):
            buttons.addWidget(button)
        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status = QLabel("Ready.", body)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.layout_ = QVBoxLayout(body)
        self.layout_.addWidget(self.engine)
        self.layout_.addWidget(self.form)
        self.layout_.addLayout(buttons)
        self.layout_.addWidget(self.progress)
        self.layout_.addWidget(self.status)
        self.layout_.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)

    # -- reactions --------------------------------------------------------------------------
    def _check(self, *args: Any) -> None:
        ok, text = check_pair(*self.form.layers())
        self.form.check_label.setText(text)
        engine_missing = self.engine_status is not None and not self.engine_status.ok
        self.run_button.setEnabled(ok and self.task is None and not engine_missing)
        self.run_button.setToolTip("Install the engine first (above)" if engine_missing else "")

    @pyqtSlot(object)  # type: ignore[misc, untyped-decorator]
    def _engine_checked(self, status: Any) -> None:
        """The engine check ended: show the GPU it found in the device picker; Run needs an engine."""
        self.engine_status = status
        if status.ok:  # without an engine nothing was detected
            self.form.set_devices(", ".join(status.devices) if status.cuda else None)
        self._check()

    def run_params(self, out_dir: str | None = None) -> RunParams:
        """The run the widgets describe, with the layers' sources as paths (before any export)."""
        before, after = self.form.layers()
        return RunParams(
            before=before.source() if before is not None else "",
            after=after.source() if after is not None else "",
            out_dir=out_dir or str(Path(tempfile.gettempdir()) / "clipcd"),
            model=self.form.model_path(),
            prompts=self.form.prompt_list(),
            prompt_match=self.form.match_key(),
            threshold=self.form.threshold_value(),
            min_area=self.form.min_area.value(),
            device=self.form.device_key(),
            bands=self.form.bands(),
            tta=str(self.form.tta.currentData() or "none"),
        )

    def prepare(self, out_dir: str) -> PreparedRun:
        """The run for the chosen layers and options, writing into ``out_dir``.

        Raises:
            ExportError: the extent or a layer that is not a file cannot be used (the message says why).
        """
        before, after = self.form.layers()
        if before is None or after is None:
            raise ExportError("Choose a before and an after raster.")
        extent, problem = self.form.extent(before.crs())
        if problem:
            raise ExportError(problem)
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        return prepare_run(before, after, self.run_params(out_dir), extent=extent, canvas=canvas)

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start a run in the task manager; the dock stays responsive."""
        from qgis_clipcd.detection.task import DetectTask

        if self.task is not None:
            return
        self.form.save()
        output = self.form.output_path()
        if output:  # stage beside the GeoPackage: the outputs are moved there by rename
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            out_dir = tempfile.mkdtemp(prefix=".clipcd-", dir=Path(output).parent)
        else:
            out_dir = tempfile.mkdtemp(prefix="clipcd-")
        try:
            prepared = self.prepare(out_dir)
        except Exception as exc:  # bad input (e.g. a CRS PROJ cannot transform) is a message, never a crash
            shutil.rmtree(out_dir, ignore_errors=True)
            self.status.setText(f"⚠ {exc}" if isinstance(exc, ExportError) else f"⚠ {type(exc).__name__}: {exc}")
            return
        choice = self.form.choice()
        task = DetectTask(
            replace(prepared.params, model=choice.path),
            iface=self.iface,
            remove_out_dir_on_failure=True,
            exports=prepared.exports,
            output=output,
            add_probability=self.form.add_probability.isChecked(),
            name=self._run_name(output),
        )
        if choice.missing:  # first run of a packaged plugin: download the default model, then detect
            task.download = attach_download(task)
            task.download.taskCompleted.connect(self.form.model_changed)
        # Qt slots (not lambdas): the connections end with the dock if the plugin unloads mid-run
        task.progressChanged.connect(self._progress)
        task.status.connect(self.status.setText, Qt.ConnectionType.QueuedConnection)
        task.taskCompleted.connect(self._completed)
        task.taskTerminated.connect(self._terminated)
        self.task = task
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("Starting the engine…")
        QgsApplication.taskManager().addTask(task)

    def _run_name(self, output: str | None) -> str:
        if output:
            return Path(output).stem
        before, after = self.form.layers()
        names = f"{before.name()} → {after.name()}" if before is not None and after is not None else "run"
        return f"{names} ({time.strftime('%H:%M')})"

    def cancel(self) -> None:
        """Ask the running task to stop (the worker cleans up its partial outputs)."""
        if self.task is not None:
            self.status.setText("Canceling…")
            self.task.cancel()

    @pyqtSlot(float)  # type: ignore[misc, untyped-decorator]
    def _progress(self, value: float) -> None:
        self.progress.setValue(round(value))

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def _completed(self) -> None:
        summary = getattr(getattr(self.task, "result", None), "summary", {}) or {}
        seconds = summary.get("seconds")
        count = summary.get("polygons")
        text = "Done." if count is None else f"Done: {count} change polygon(s)"
        text += f" in {float(seconds):.0f} s" if seconds is not None else ""
        self._ended(text + labels_text(summary) + ".")

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def _terminated(self) -> None:
        error = getattr(self.task, "error", "")
        self._ended(error or "Canceled.")

    def _ended(self, text: str) -> None:
        self.task = None
        self.status.setText(text)
        self.cancel_button.setEnabled(False)
        self._check()

    def copy_command(self) -> None:
        """Put the equivalent command line on the clipboard."""
        from qgis_clipcd.engine import environment as env

        # no interpreter probing here: that imports torch in a subprocess and would block QGIS
        found = getattr(self.engine_status, "python", None)
        python = found or os.environ.get(env.PYTHON_ENV) or env.configured_python() or env.qgis_python()
        out_dir = self.form.output_path()
        params = self.run_params(str(Path(out_dir).with_suffix("")) if out_dir else None)
        before, _ = self.form.layers()
        if before is not None:
            extent, _ = self.form.extent(before.crs())
            if extent is not None:
                box = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
                params = replace(params, extent=box)
        QgsApplication.clipboard().setText(params.command_line(python or "python3"))
        self.status.setText("Command copied to the clipboard.")

    def closeEvent(self, event: Any) -> None:
        """Remember the settings when the dock closes."""
        self.form.save()
        super().closeEvent(event)
