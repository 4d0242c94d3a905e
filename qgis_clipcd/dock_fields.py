"""Helpers for the dock: the before/after check, settings keys, enum compat."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
)

SETTINGS = "clipcd"
PROJECT_SCOPE = "clipcd"


def raster_filter() -> Any:
    """The raster-layer filter of QgsMapLayerComboBox (``Qgis.LayerFilter`` from 3.34, else the proxy's enum)."""
    scoped = getattr(Qgis, "LayerFilter", None)
    return scoped.RasterLayer if scoped is not None else QgsMapLayerProxyModel.Filter.RasterLayer


def _resolution(layer: QgsRasterLayer) -> tuple[float, float]:
    return layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()


def check_pair(before: QgsRasterLayer | None, after: QgsRasterLayer | None) -> tuple[bool, str]:
    """Whether the pair can run, and a one-line note for the dock.

    Flags a CRS, extent or resolution difference (the engine aligns the after raster onto the
    before raster's grid), rasters that are not files, the same layer twice, and no overlap.
    """
    if before is None or after is None:
        return False, "Choose a before and an after raster."
    if before.id() == after.id():
        return False, "Before and after are the same layer; choose two dates."
    for role, layer in (("before", before), ("after", after)):
        if layer.providerType() != "gdal":
            return False, f"The {role} layer {layer.name()!r} is not a file raster; save it as GeoTIFF first."
        if layer.bandCount() < 3:
            note = f" {layer.name()!r} has {layer.bandCount()} band(s); it is repeated to RGB."
            break
    else:
        note = ""
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
    if same_crs and not _close(_resolution(before), _resolution(after), before, pixels=0.01):
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
