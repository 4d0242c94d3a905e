"""The ClipCD dock: pick two dates, a model and options, run in the background, see the result."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsSettings
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from qgis_clipcd import card as cards
from qgis_clipcd.dock_fields import PROJECT_SCOPE, SETTINGS, check_pair, raster_filter
from qgis_clipcd.params import DEVICES, RunParams, split_prompts


class ClipCDDock(QgsDockWidget):  # type: ignore[misc]
    """Dock widget for one change detection run at a time."""

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__("ClipCD change detection", parent)
        self.setObjectName("ClipCDDock")
        self.iface = iface
        self.task: Any = None
        self.card: dict[str, Any] = {}
        self._build()
        self._restore()
        self._connect()
        self._model_changed()
        self._check()

    # -- building ---------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        form = QFormLayout()
        self.before = QgsMapLayerComboBox(body)
        self.after = QgsMapLayerComboBox(body)
        for combo in (self.before, self.after):
            combo.setFilters(raster_filter())
            combo.setAllowEmptyLayer(True)
        self.check_label = _note(body)
        self.prompts = QLineEdit(body)
        self.prompts.setPlaceholderText("building, road (comma separated)")
        self.prompts_note = _note(body)
        self.model = QgsFileWidget(body)
        self.model.setFilter("ClipCD model (*.safetensors)")
        self.model.lineEdit().setPlaceholderText("default model")
        self.model_summary = _note(body)
        self.device = QComboBox(body)
        self.device.addItems(DEVICES)
        self.threshold = QDoubleSpinBox(body)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.min_area = QDoubleSpinBox(body)
        self.min_area.setRange(0.0, 1e9)
        self.min_area.setDecimals(0)
        self.min_area.setSuffix(" m²")
        self.output = QgsFileWidget(body)
        self.output.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output.lineEdit().setPlaceholderText("temporary folder")
        for label, widget in (
            ("Before", self.before),
            ("After", self.after),
            ("", self.check_label),
            ("Prompts", self.prompts),
            ("", self.prompts_note),
            ("Model", self.model),
            ("", self.model_summary),
            ("Device", self.device),
            ("Threshold", self.threshold),
            ("Minimum area", self.min_area),
            ("Output folder", self.output),
        ):
            form.addRow(label, widget)
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
        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _connect(self) -> None:
        self.before.layerChanged.connect(self._check)
        self.after.layerChanged.connect(self._check)
        self.model.fileChanged.connect(self._model_changed)
        self.prompts.editingFinished.connect(self._store_prompts)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_command)
        QgsProject.instance().readProject.connect(self._load_prompts)

    # -- settings ---------------------------------------------------------------------------
    def _restore(self) -> None:
        settings = QgsSettings()
        self.model.setFilePath(str(settings.value(f"{SETTINGS}/model", "")))
        self.output.setFilePath(str(settings.value(f"{SETTINGS}/out_dir", "")))
        device = str(settings.value(f"{SETTINGS}/device", "auto"))
        self.device.setCurrentIndex(max(0, self.device.findText(device)))
        self.min_area.setValue(float(settings.value(f"{SETTINGS}/min_area", 0.0)))
        self._load_prompts()

    def _save(self) -> None:
        settings = QgsSettings()
        settings.setValue(f"{SETTINGS}/model", self.model.filePath())
        settings.setValue(f"{SETTINGS}/out_dir", self.output.filePath())
        settings.setValue(f"{SETTINGS}/device", self.device.currentText())
        settings.setValue(f"{SETTINGS}/min_area", self.min_area.value())
        self._store_prompts()

    def _load_prompts(self, *args: Any) -> None:
        text, _ = QgsProject.instance().readEntry(PROJECT_SCOPE, "prompts", "")
        self.prompts.setText(text)

    def _store_prompts(self) -> None:
        QgsProject.instance().writeEntry(PROJECT_SCOPE, "prompts", self.prompts.text())

    # -- reactions --------------------------------------------------------------------------
    def _check(self, *args: Any) -> None:
        ok, text = check_pair(_raster(self.before.currentLayer()), _raster(self.after.currentLayer()))
        self.check_label.setText(text)
        self.run_button.setEnabled(ok and self.task is None)

    def _model_changed(self, *args: Any) -> None:
        try:
            self.card = cards.read_card(self.model_path())
        except cards.CardError as exc:
            self.card = {}
            self.model_summary.setText(f"⚠ {exc}")
            self.prompts.setEnabled(True)
            self.prompts_note.setText("")
            return
        self.model_summary.setText(cards.summary(self.card))
        self.threshold.setValue(cards.default_threshold(self.card))
        uses = cards.accepts_prompts(self.card)
        self.prompts.setEnabled(uses)
        self.prompts_note.setText("" if uses else "This model does not use prompts: it finds any change.")

    def model_path(self) -> str | None:
        """The chosen model file, or None for the default model."""
        return self.model.filePath().strip() or None

    def run_params(self, out_dir: str | None = None) -> RunParams:
        """The run the widgets describe (``out_dir`` overrides an empty output folder)."""
        before = _raster(self.before.currentLayer())
        after = _raster(self.after.currentLayer())
        output = self.output.filePath().strip() or out_dir or str(Path(tempfile.gettempdir()) / "clipcd")
        return RunParams(
            before=before.source() if before is not None else "",
            after=after.source() if after is not None else "",
            out_dir=output,
            model=self.model_path(),
            prompts=split_prompts(self.prompts.text()) if self.prompts.isEnabled() else (),
            threshold=round(self.threshold.value(), 4),
            min_area=self.min_area.value(),
            device=self.device.currentText(),
        )

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start a run in the task manager; the dock stays responsive."""
        from qgis_clipcd.task import DetectTask

        if self.task is not None:
            return
        self._save()
        temporary = not self.output.filePath().strip()
        out_dir = tempfile.mkdtemp(prefix="clipcd-") if temporary else None
        params = self.run_params(out_dir)
        task = DetectTask(params, iface=self.iface, remove_out_dir_on_failure=temporary)
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
        self._ended("Done.")

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
        from qgis_clipcd import worker

        # no interpreter probing here: that imports torch in a subprocess and would block QGIS
        python = os.environ.get(worker.PYTHON_ENV) or worker.configured_python() or worker.qgis_python()
        command = self.run_params().command_line(python or "python3")
        QgsApplication.clipboard().setText(command)
        self.status.setText("Command copied to the clipboard.")

    def closeEvent(self, event: Any) -> None:
        """Remember the settings when the dock closes."""
        self._save()
        super().closeEvent(event)


def _raster(layer: Any) -> QgsRasterLayer | None:
    return layer if isinstance(layer, QgsRasterLayer) else None


def _note(parent: QWidget) -> QLabel:
    label = QLabel("", parent)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label
