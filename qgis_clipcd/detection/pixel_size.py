"""A raster layer's pixel size in metres, as the engine computes it (``backend.raster.pixel_size``), with QGIS.

Projected CRSs: the pixel's sides in the CRS's unit converted to metres. Geographic CRSs: the
ellipsoidal length of one pixel step across the layer's centre, along the parallel (x) and the
meridian (y), on the CRS's own ellipsoid. The plugin does not import the engine (it runs in its
own Python), so the rule is restated here; ``tests/plugin/test_pixel_size.py`` checks both agree.
"""

from __future__ import annotations

import re

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDistanceArea,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsUnitTypes,
)


def layer_pixel_size_m(layer: QgsRasterLayer) -> tuple[float, float] | None:
    """``(x, y)`` pixel size in metres of ``layer``, or None without a valid CRS or extent."""
    crs = layer.crs()
    if not crs.isValid() or layer.width() < 1 or layer.height() < 1:
        return None
    step_x, step_y = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    if not crs.isGeographic():
        factor = _axis_unit_metres(crs)
        return step_x * factor, step_y * factor
    return _geodesic_steps(crs, layer.extent().center(), step_x, step_y)


def _axis_unit_metres(crs: QgsCoordinateReferenceSystem) -> float:
    """Metres per unit of the CRS's axes, from its WKT (QGIS's unit enum has no US survey foot)."""
    wkt = crs.toWkt(QgsCoordinateReferenceSystem.WKT2_2019)
    axes = wkt.rfind("CS[")
    match = re.search(r'LENGTHUNIT\["[^"]*",\s*([0-9.eE+-]+)', wkt[axes:]) if axes >= 0 else None
    if match is not None:
        return float(match.group(1))
    return float(QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceMeters))


def _geodesic_steps(
    crs: QgsCoordinateReferenceSystem, centre: QgsPointXY, step_x: float, step_y: float
) -> tuple[float, float]:
    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, QgsProject.instance().transformContext())
    measure.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
    x, y = centre.x(), centre.y()
    along_x = measure.measureLine(QgsPointXY(x - step_x / 2, y), QgsPointXY(x + step_x / 2, y))
    along_y = measure.measureLine(QgsPointXY(x, y - step_y / 2), QgsPointXY(x, y + step_y / 2))
    return along_x, along_y


def describe(size: tuple[float, float] | None) -> str:
    """``"10.0 m"``, ``"8.46 x 12.8 m"`` or ``"unknown"``, as the engine writes it."""
    if size is None:
        return "unknown"
    x, y = size

    def metres(value: float) -> str:
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"

    if abs(x - y) <= 0.02 * max(x, y):
        return f"{metres(x)} m"
    return f"{metres(x)} x {metres(y)} m"
