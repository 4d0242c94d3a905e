"""The dock's band row: the engine picks the model's bands by the rasters' band names, or the analyst picks them.

"By band name" sends no ``--bands``: the engine matches the model card's bands to the band
descriptions GDAL reads (``B04 red``, ``SR_B4``...), else colour interpretation, else the first
three bands, and logs what it chose. "Chosen bands" sends the three numbers picked here, defaulting
to the colour interpretation. The same choice as the algorithm's BANDS parameter (empty: by name).
"""

from __future__ import annotations

from qgis.core import QgsRasterLayer
from qgis.gui import QgsRasterBandComboBox
from qgis.PyQt.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from qgis_clipcd.dock.fields import default_bands

#: Band mapping choices: key -> label.
BAND_MODES = {"name": "By band name", "chosen": "Chosen bands"}


class BandPicker(QWidget):  # type: ignore[misc]
    """A mode (by name / chosen) and three band combos for red, green and blue."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = QComboBox(self)
        for key, label in BAND_MODES.items():
            self.mode.addItem(label, key)
        self.mode.setToolTip(
            "By band name: the engine matches the model's bands to the rasters' band names (B04 red, SR_B4...), "
            "else their colour interpretation, and says what it chose in the log"
        )
        self.red, self.green, self.blue = (QgsRasterBandComboBox(self) for _ in range(3))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.mode)
        for letter, combo in (("R", self.red), ("G", self.green), ("B", self.blue)):
            row.addWidget(QLabel(letter, self))
            row.addWidget(combo, 1)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()

    def set_layer(self, layer: QgsRasterLayer | None) -> bool:
        """Offer ``layer``'s bands (defaulting to its colour interpretation); True when it has more than three."""
        many = layer is not None and layer.bandCount() > 3
        for combo in (self.red, self.green, self.blue):
            combo.setLayer(layer if many else None)
        if many and layer is not None:
            for combo, band in zip((self.red, self.green, self.blue), default_bands(layer), strict=True):
                combo.setBand(band)
        return many

    def mode_key(self) -> str:
        """``"name"`` or ``"chosen"``."""
        return str(self.mode.currentData() or "name")

    def set_mode(self, key: str) -> None:
        """Select a mode by key (unknown keys are ignored)."""
        index = self.mode.findData(key)
        if index >= 0:
            self.mode.setCurrentIndex(index)

    def bands(self) -> tuple[int, int, int] | None:
        """The chosen band numbers, or None for "by band name" (and for rasters of three bands or fewer)."""
        if self.mode_key() != "chosen" or self.red.layer() is None:
            return None
        values = (self.red.currentBand(), self.green.currentBand(), self.blue.currentBand())
        return values if all(v >= 1 for v in values) else None

    def _mode_changed(self, *args: object) -> None:
        chosen = self.mode_key() == "chosen"
        for combo in (self.red, self.green, self.blue):
            combo.setEnabled(chosen)
