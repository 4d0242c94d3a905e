"""ClipCD QGIS plugin: CLIP-guided change detection between two rasters.

QGIS calls :func:`classFactory`. Nothing here imports the engine: it runs in a child process
(:mod:`qgis_clipcd.engine.worker`). In a checkout, put a plugin folder named ``qgis_clipcd`` on
QGIS_PLUGINPATH that holds (or links to) this package's files, ``metadata.txt``, ``resources/``
and ``backend/`` from the repository root; :mod:`qgis_clipcd.metadata` finds them either way.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:
    """The plugin instance QGIS loads."""
    from qgis_clipcd.plugin import ClipCDPlugin

    return ClipCDPlugin(iface)
