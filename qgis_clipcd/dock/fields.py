"""Helpers for the dock: the before/after check, settings keys, enum compat."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRaster,
    QgsRasterLayer,
)

from qgis_clipcd.detection.layer_export import file_path, native_resolution

SETTINGS = "clipcd"
PROJECT_SCOPE = "clipcd"


def raster_filter() -> Any:
    """The raster-layer filter of QgsMapLayerComboBox (``Qgis.LayerFilter`` from 3.34, else the proxy's enum)."""
    scoped = getattr(Qgis, "LayerFilter", None)
    return scoped.RasterLayer if scoped is not None else QgsMapLayerProxyModel.Filter.RasterLayer


def polygon_filter() -> Any:
    """The polygon-layer filter of QgsMapLayerComboBox (for the AOI picker)."""
    scoped = getattr(Qgis, "LayerFilter", None)
    return scoped.PolygonLayer if scoped is not None else QgsMapLayerProxyModel.Filter.PolygonLayer


def default_bands(layer: QgsRasterLayer) -> tuple[int, int, int]:
    """Red, green and blue band numbers from the bands' colour interpretation, else 1, 2, 3."""
    provider = layer.dataProvider()
    wanted = [_colour("RedBand"), _colour("GreenBand"), _colour("BlueBand")]
    found = [0, 0, 0]
    for band in range(1, layer.bandCount() + 1):
        kind = provider.colorInterpretation(band)
        for slot, colour in enumerate(wanted):
            if kind == colour and not found[slot]:
                found[slot] = band
    if all(found):
        return found[0], found[1], found[2]
    return 1, 2, 3


def _colour(name: str) -> int:
    """A colour interpretation value (``Qgis.RasterColorInterpretation`` from 3.30, else ``QgsRaster``)."""
    scoped = getattr(Qgis, "RasterColorInterpretation", None)
    if scoped is not None:
        return int(getattr(scoped, name))
    return int(getattr(QgsRaster.ColorInterpretation, name))


def _resolution(layer: QgsRasterLayer) -> tuple[float, float]:
    return layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()


def check_pair(before: QgsRasterLayer | None, after: QgsRasterLayer | None) -> tuple[bool, str]:
    """Whether the pair can run, and a one-line note for the dock.

    Flags a CRS, extent or resolution difference (the engine aligns the after raster onto the
    before raster's grid), rasters that are not files (written to a temporary GeoTIFF first),
    the same layer twice, and no overlap.
    """
    if before is None or after is None:
        return False, "Choose a before and an after raster."
    if before.id() == after.id():
        return False, "Before and after are the same layer; choose two dates."
    note = ""
    for layer in (before, after):
        if file_path(layer) is None:
            note += f" {layer.name()!r} is not a file: it is written to a temporary GeoTIFF for the run."
        if layer.bandCount() < 3:
            note += f" {layer.name()!r} has {layer.bandCount()} band(s); it is repeated to RGB."
    differences: list[str] = []
    same_crs = before.crs() == after.crs()
    if not same_crs:
        differences.append(f"CRS ({before.crs().authid() or 'custom'} vs {after.crs().authid() or 'custom'})")
    after_extent = after.extent()
    if not same_crs:
        try:
            transform = QgsCoordinateTransform(after.crs(), before.crs(), QgsProject.instance())
            after_extent = transform.transformBoundingBox(after_extent)
        except Exception:  # a CRS pair PROJ cannot transform: leave the extent as it is
            after_extent = after.extent()
    if not before.extent().intersects(after_extent):
        return False, "The rasters do not overlap; choose a pair that covers the same area."
    if not _close(before.extent().toRectF().getCoords(), after_extent.toRectF().getCoords(), before):
        differences.append("extent")
    gridded = native_resolution(before) is not None and native_resolution(after) is not None
    if same_crs and gridded and not _close(_resolution(before), _resolution(after), before, pixels=0.01):
        bx, _ = _resolution(before)
        ax, _ = _resolution(after)
        differences.append(f"resolution ({bx:g} vs {ax:g})")
    if not differences:
        return True, "✓ Same CRS, extent and resolution." + note
    listed = ", ".join(differences)
    return True, f"⚠ Different {listed}: the after raster will be aligned onto the before grid.{note}"


def _close(a: tuple[float, ...], b: tuple[float, ...], layer: QgsRasterLayer, pixels: float = 0.5) -> bool:
    """Equal within a fraction of the before raster's pixel."""
    tolerance = pixels * max(abs(layer.rasterUnitsPerPixelX()), abs(layer.rasterUnitsPerPixelY()), 1e-12)
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))
