"""The dock's input form: layers, bands, prompts, model, device, threshold, extent and output.

The form only holds widgets and reads their values; :mod:`qgis_clipcd.dock.widget` runs things. Settings are
remembered with QgsSettings; prompts are stored in the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from qgis_clipcd.detection.pixel_size import describe, layer_pixel_size_m
from qgis_clipcd.dock import remembered
from qgis_clipcd.dock.band_picker import BandPicker
from qgis_clipcd.dock.fields import PROJECT_SCOPE, polygon_filter, raster_filter
from qgis_clipcd.dock.prompting import MATCH_LABELS, prompts_note, prompts_usable
from qgis_clipcd.models import card as cards
from qgis_clipcd.models.choice import ModelChoice, choose_model
from qgis_clipcd.params import DEVICES, split_prompts

#: Extent choices: key -> label.
EXTENTS = {"overlap": "Layers' overlap", "canvas": "Map canvas", "aoi": "AOI polygon layer"}
_DEVICE_LABELS = {"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA GPU"}
#: ``--tta`` modes as the dock offers them.
TTA_LABELS = {
    "model": "The model's choice",
    "none": "Fast (one pass)",
    "flips": "Better (4 passes, mirrored)",
    "d4": "Best (8 passes, turned)",
}


class InputsForm(QWidget):  # type: ignore[misc]
    """Every input of a run, laid out as one form."""

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.card: dict[str, Any] = {}
        self._build()
        self.before.layerChanged.connect(self._before_changed)
        self.before.layerChanged.connect(self._show_pixel_size)
        self.after.layerChanged.connect(self._show_pixel_size)
        self.auto_prompts.toggled.connect(self._prompts_state)
        self.prompt_match.currentIndexChanged.connect(self._prompts_state)
        self.vocabulary.activated.connect(self._add_class)
        self.extent_mode.currentIndexChanged.connect(self._extent_state)
        self.model.fileChanged.connect(self.model_changed)
        self.prompts.editingFinished.connect(self.store_prompts)
        QgsProject.instance().readProject.connect(self.load_prompts)
        self.restore()
        self.model_changed()
        self._before_changed()
        self._show_pixel_size()
        self._extent_state()

    def _build(self) -> None:
        self.before = QgsMapLayerComboBox(self)
        self.after = QgsMapLayerComboBox(self)
        for combo in (self.before, self.after):
            combo.setFilters(raster_filter())
            combo.setAllowEmptyLayer(True)
        self.check_label = _note(self)
        self.pixel_note = _note(self)
        self.bands_row = BandPicker(self)
        self.auto_prompts = QCheckBox("Automatic prompts", self)
        self.auto_prompts.setToolTip("The model picks class names from each image pair itself")
        self.prompts = QLineEdit(self)
        self.prompts.setPlaceholderText("building, road (comma separated)")
        self.vocabulary = QComboBox(self)
        self.prompt_match = QComboBox(self)
        for key, label in MATCH_LABELS.items():
            self.prompt_match.addItem(label, key)
        self.prompt_match.setToolTip(
            "Which CLIP-labelled changes the prompts keep: by the after date, the before, either"
        )
        self.clip: str | None = None  # the CLIP weights the engine labels with (None: none present)
        self.prompts_note = _note(self)
        self.model = QgsFileWidget(self)
        self.model.setFilter("ClipCD model (*.safetensors)")
        self.model.lineEdit().setPlaceholderText("default model")
        self.model_pick = _note(self)
        self.model_summary = _note(self)
        self.picked: str | None = None  # the shipped model picked for the rasters' pixel size
        self.device = QComboBox(self)
        for key in DEVICES:
            self.device.addItem(_DEVICE_LABELS[key], key)
        self.threshold = QDoubleSpinBox(self)
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setSpecialValueText("the model's")  # shown at 0: the card's threshold is used
        self.threshold.setToolTip("Change probability above which a pixel counts as change; 0 uses the model's")
        self.min_area = QDoubleSpinBox(self)
        self.min_area.setRange(0.0, 1e9)
        self.min_area.setDecimals(0)
        self.min_area.setSuffix(" m²")
        self.tta = QComboBox(self)
        for key, label in TTA_LABELS.items():
            self.tta.addItem(label, key)
        self.tta.setToolTip("Average the model over mirrored and turned copies: more accurate, slower")
        self.extent_mode = QComboBox(self)
        for key, label in EXTENTS.items():
            self.extent_mode.addItem(label, key)
        self.aoi = QgsMapLayerComboBox(self)
        self.aoi.setFilters(polygon_filter())
        self.output = QgsFileWidget(self)
        self.output.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output.setFilter("GeoPackage (*.gpkg)")
        self.output.lineEdit().setPlaceholderText("temporary layer")
        self.add_probability = QCheckBox("Add the probability raster", self)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.rows: dict[str, QWidget] = {}
        for label, widget in (
            ("Before", self.before),
            ("After", self.after),
            ("", self.check_label),
            ("Pixel size", self.pixel_note),
            ("Bands", self.bands_row),
            ("Prompts", self.auto_prompts),
            ("", self.prompts),
            ("", self.vocabulary),
            ("", self.prompt_match),
            ("", self.prompts_note),
            ("Model", self.model),
            ("", self.model_pick),
            ("", self.model_summary),
            ("Device", self.device),
            ("Threshold", self.threshold),
            ("Minimum area", self.min_area),
            ("Accuracy", self.tta),
            ("Extent", self.extent_mode),
            ("AOI layer", self.aoi),
            ("Output", self.output),
            ("", self.add_probability),
        ):
            form.addRow(label, widget)
        self.form = form

    # -- settings ---------------------------------------------------------------------------
    def restore(self) -> None:
        """Put the remembered settings into the widgets."""
        remembered.restore(self)
        self.load_prompts()

    def save(self) -> None:
        """Remember the widgets' values (and store the prompts in the project)."""
        remembered.save(self)
        self.store_prompts()

    def load_prompts(self, *args: Any) -> None:
        """The prompts stored in the current project."""
        text, _ = QgsProject.instance().readEntry(PROJECT_SCOPE, "prompts", "")
        self.prompts.setText(text)

    def store_prompts(self) -> None:
        """Keep the prompts in the project (saved with it)."""
        QgsProject.instance().writeEntry(PROJECT_SCOPE, "prompts", self.prompts.text())

    # -- reactions --------------------------------------------------------------------------
    def model_changed(self, *args: Any) -> None:
        """Read the chosen model's card: summary, threshold, whether prompts are used, its vocabulary."""
        try:
            self.card = cards.read_card(self.model_path() or self.picked)
        except cards.CardError as exc:
            self.card = {}
            self.model_summary.setText(f"⚠ {exc}")
            self.threshold.setValue(0.0)  # the model's own, once there is one
        else:
            self.model_summary.setText(cards.summary(self.card))
            self.threshold.setValue(cards.default_threshold(self.card))
        self.vocabulary.clear()
        self.vocabulary.addItem("Add a class…")
        self.vocabulary.addItems([str(name) for name in self.card.get("vocabulary") or []])
        self._prompts_state()

    def set_clip(self, name: str | None) -> None:
        """The CLIP weights the engine labels with (None: none present); prompts follow."""
        self.clip = name
        self._prompts_state()

    def _prompts_state(self, *args: Any) -> None:
        text_side = cards.accepts_prompts(self.card) if self.card else True
        self.auto_prompts.setEnabled(text_side)
        automatic = text_side and self.auto_prompts.isChecked()
        self.prompts.setEnabled(prompts_usable(text_side, self.clip) and not automatic)
        self.vocabulary.setEnabled(self.prompts.isEnabled() and self.vocabulary.count() > 1)
        self.prompt_match.setEnabled(self.prompts.isEnabled())
        self._show_row(self.prompt_match, self.clip is not None)
        self.prompts_note.setText(prompts_note(text_side, automatic, self.clip, self.match_key()))

    def match_key(self) -> str:
        """The prompt-match choice: "appeared", "disappeared" or "either"."""
        return str(self.prompt_match.currentData() or "appeared")

    def _add_class(self, index: int) -> None:
        if index <= 0:
            return
        name = self.vocabulary.itemText(index)
        current = list(split_prompts(self.prompts.text()))
        if name not in current:
            self.prompts.setText(", ".join([*current, name]))
            self.store_prompts()
        self.vocabulary.setCurrentIndex(0)

    def _before_changed(self, *args: Any) -> None:
        self._show_row(self.bands_row, self.bands_row.set_layer(_raster(self.before.currentLayer())))

    def _show_pixel_size(self, *args: Any) -> None:
        """The chosen rasters' pixel size in metres, as the engine computes it."""
        sizes = [
            (role, _raster(combo.currentLayer())) for role, combo in (("before", self.before), ("after", self.after))
        ]
        parts = [f"{role} {describe(layer_pixel_size_m(layer))}" for role, layer in sizes if layer is not None]
        self.pixel_note.setText(", ".join(parts))
        self._show_row(self.pixel_note, bool(parts))
        self.update_pick()

    def choice(self) -> ModelChoice:
        """The model a run would use now: the chosen file, else the one picked for the before raster's pixel size."""
        before = _raster(self.before.currentLayer())
        return choose_model(self.model_path(), layer_pixel_size_m(before) if before is not None else None)

    def update_pick(self) -> None:
        """Show which shipped model fits the rasters (when no file is chosen); read its card when the pick changes."""
        choice = self.choice()
        picked = None if self.model_path() or choice.missing else choice.path  # missing: downloaded on the first run
        text = f"{Path(choice.path).name}: {choice.reason}" if picked and choice.reason else ""
        self.model_pick.setText(("⚠ " if not choice.inside else "") + text if text else "")
        self._show_row(self.model_pick, bool(text))
        if picked != self.picked:
            self.picked = picked
            self.model_changed()

    def _extent_state(self, *args: Any) -> None:
        self._show_row(self.aoi, self.extent_mode.currentData() == "aoi")

    def _show_row(self, widget: QWidget, visible: bool) -> None:
        widget.setVisible(visible)
        label = self.form.labelForField(widget)
        if label is not None:
            label.setVisible(visible)

    def set_devices(self, cuda_name: str | None) -> None:
        """Show what the engine detected: the GPU's name, or that there is none."""
        self.device.setItemText(0, f"Automatic ({'CUDA: ' + cuda_name if cuda_name else 'CPU, no CUDA GPU found'})")
        self.device.setItemText(2, "CUDA GPU" + (f" ({cuda_name})" if cuda_name else " (not detected)"))

    # -- values -----------------------------------------------------------------------------
    def layers(self) -> tuple[QgsRasterLayer | None, QgsRasterLayer | None]:
        """The chosen before and after rasters."""
        return _raster(self.before.currentLayer()), _raster(self.after.currentLayer())

    def threshold_value(self) -> float | None:
        """The chosen threshold, or None for the model card's (the spin box at 0)."""
        value = round(self.threshold.value(), 4)
        return value if value > 0 else None

    def model_path(self) -> str | None:
        """The chosen model file, or None for the default model."""
        return self.model.filePath().strip() or None

    def device_key(self) -> str:
        """The device: "auto", "cpu" or "cuda"."""
        return str(self.device.currentData() or "auto")

    def prompt_list(self) -> tuple[str, ...]:
        """The prompts to send: none when the model ignores them or picks them itself."""
        if not self.prompts.isEnabled():
            return ()
        return split_prompts(self.prompts.text())

    def bands(self) -> tuple[int, int, int] | None:
        """The chosen band numbers; None lets the engine pick them by band name (and for three-band rasters)."""
        return self.bands_row.bands()

    def output_path(self) -> str | None:
        """The GeoPackage to write, or None for a temporary layer."""
        return self.output.filePath().strip() or None

    def extent(self, crs: QgsCoordinateReferenceSystem) -> tuple[QgsRectangle | None, str]:
        """The chosen extent in ``crs`` (None: the layers' overlap) and a problem to show, if any."""
        mode = self.extent_mode.currentData()
        if mode == "canvas":
            canvas = self.iface.mapCanvas() if self.iface is not None else None
            if canvas is None:
                return None, "There is no map canvas to take the extent from."
            return _transform(canvas.extent(), canvas.mapSettings().destinationCrs(), crs), ""
        if mode == "aoi":
            layer = self.aoi.currentLayer()
            if layer is None:
                return None, "Choose an AOI polygon layer, or another extent."
            return _transform(layer.extent(), layer.crs(), crs), ""
        return None, ""


def _transform(box: QgsRectangle, source: QgsCoordinateReferenceSystem, target: QgsCoordinateReferenceSystem) -> Any:
    if source == target or not source.isValid():
        return QgsRectangle(box)
    return QgsCoordinateTransform(source, target, QgsProject.instance()).transformBoundingBox(box)


def _raster(layer: Any) -> QgsRasterLayer | None:
    return layer if isinstance(layer, QgsRasterLayer) else None


def _note(parent: QWidget) -> QLabel:
    label = QLabel("", parent)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label
