"""The Processing provider ``clipcd``."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from qgis_clipcd.metadata import icon_path, metadata
from qgis_clipcd.processing_provider.algorithm import DetectChangeAlgorithm


class ClipCDProvider(QgsProcessingProvider):  # type: ignore[misc]
    """Holds the algorithms; its id is stored in scripts and models, so it never changes."""

    def id(self) -> str:
        """Provider id, as in ``clipcd:detect_change``."""
        return "clipcd"

    def name(self) -> str:
        """Name shown in the Processing toolbox."""
        return "CLIP Change Detection"

    def longName(self) -> str:
        """Name with version."""
        return f"CLIP Change Detection {metadata().get('version', '')}".strip()

    def icon(self) -> QIcon:
        """The plugin's icon."""
        return QIcon(str(icon_path()))

    def loadAlgorithms(self) -> None:
        """Register the algorithms."""
        self.addAlgorithm(DetectChangeAlgorithm())

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        """The engine writes GeoPackages only."""
        return ["gpkg"]

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        """The engine writes GeoTIFFs only."""
        return ["tif"]
