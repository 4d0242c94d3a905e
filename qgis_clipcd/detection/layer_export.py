"""Rasters that are not files (web, virtual, in-memory) become temporary GeoTIFFs the worker can read.

The engine reads files. A layer whose data lives elsewhere — WMS/XYZ tiles, a virtual raster, a GDAL
``/vsimem/`` dataset — is written once for the run's extent and resolution, in the before raster's CRS.
:func:`plan_export` runs on the main thread (it clones the layer's provider and renderer, which is how
QGIS's own algorithms read a layer off the main thread); :func:`write_export` then runs anywhere,
typically in the task or algorithm thread.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsProviderRegistry,
    QgsRasterFileWriter,
    QgsRasterInterface,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRasterProjector,
    QgsRectangle,
)

_log = logging.getLogger(__name__)

#: Exports larger than this (pixels per side) are refused: choose a smaller extent or a coarser resolution.
MAX_SIDE = 30000
#: Pixels per side when nothing gives a resolution (a web layer with no file partner and no canvas).
FALLBACK_SIDE = 2048
_IMAGE_TYPES = ("ARGB32", "ARGB32_Premultiplied")


class ExportError(RuntimeError):
    """A layer could not be written to a temporary GeoTIFF; the message names the layer and what to do."""


@dataclass
class RasterExport:
    """One layer to write, prepared on the main thread.

    Attributes:
        role: "before" or "after" (for messages).
        layer_name: The layer's name in the project.
        pipe: A pipe over clones of the layer's provider (and renderer, for image sources such as web tiles).
        crs: The CRS to write in.
        extent: The area to write, in ``crs``.
        width: Output columns.
        height: Output rows.
        path: Where the GeoTIFF goes.
        context: Coordinate transform context of the project.
    """

    role: str
    layer_name: str
    pipe: QgsRasterPipe
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    width: int
    height: int
    path: Path
    context: QgsCoordinateTransformContext


def file_path(layer: QgsRasterLayer) -> str | None:
    """The file behind a GDAL raster layer, or None when its data is not a plain file."""
    if layer.providerType() != "gdal":
        return None
    path = str(QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path") or "")
    return path if path and Path(path).is_file() else None


def native_resolution(layer: QgsRasterLayer) -> float | None:
    """Map units per pixel of a raster with a fixed grid; None for sources without one (web tiles)."""
    provider = layer.dataProvider()
    if provider is None or not provider.capabilities() & QgsRasterInterface.Capability.Size:
        return None
    if provider.xSize() <= 0 or layer.extent().isEmpty():
        return None
    return float(abs(layer.rasterUnitsPerPixelX()))


def is_image_source(layer: QgsRasterLayer) -> bool:
    """Whether the provider delivers rendered colours (WMS, XYZ) rather than band values."""
    provider = layer.dataProvider()
    if provider is None or provider.bandCount() < 1:
        return False
    kind = provider.dataType(1)
    return any(kind == getattr(Qgis.DataType, name) for name in _IMAGE_TYPES)


def plan_export(
    layer: QgsRasterLayer,
    role: str,
    folder: Path,
    crs: QgsCoordinateReferenceSystem,
    extent: QgsRectangle,
    resolution: float,
    context: QgsCoordinateTransformContext,
) -> RasterExport:
    """Prepare writing ``layer`` over ``extent`` (in ``crs``) at ``resolution`` map units per pixel.

    Call on the main thread. Raises ExportError when the layer has no data or the size is absurd.
    """
    provider = layer.dataProvider()
    if provider is None or not layer.isValid():
        raise ExportError(f"The {role} layer {layer.name()!r} is not valid; check its source.")
    if extent.isEmpty() or not math.isfinite(resolution) or resolution <= 0:
        raise ExportError(f"Nothing to write for the {role} layer {layer.name()!r}: empty extent or resolution.")
    width = math.ceil(extent.width() / resolution)
    height = math.ceil(extent.height() / resolution)
    if max(width, height) > MAX_SIDE:
        raise ExportError(
            f"The {role} layer {layer.name()!r} would be {width} x {height} pixels at {resolution:g} map units per "
            f"pixel (at most {MAX_SIDE} per side). Choose a smaller extent (map canvas or an AOI layer)."
        )
    # whole pixels: the written grid has exactly ``resolution``
    left, top = extent.xMinimum(), extent.yMaximum()
    extent = QgsRectangle(left, top - height * resolution, left + width * resolution, top)
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise ExportError(f"Cannot read the {role} layer {layer.name()!r} ({layer.providerType()}).")
    if is_image_source(layer) and layer.renderer() is not None:
        pipe.set(layer.renderer().clone())
    if layer.crs() != crs:
        projector = QgsRasterProjector()
        projector.setCrs(layer.crs(), crs, context)
        pipe.insert(2, projector)
    safe = "".join(c if c.isalnum() else "_" for c in layer.name())[:40] or "layer"
    path = folder / f"{role}-{safe}.tif"
    return RasterExport(role, layer.name(), pipe, crs, extent, max(1, width), max(1, height), path, context)


def write_export(plan: RasterExport, feedback: Any = None) -> Path:
    """Write the planned GeoTIFF (temp file, then rename); return its path.

    Args:
        plan: From :func:`plan_export`.
        feedback: Optional QgsRasterBlockFeedback (progress and cancel).

    Raises:
        ExportError: the writer failed or was canceled; no file is left behind.
    """
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = plan.path.with_name(plan.path.stem + ".partial.tif")
    writer = QgsRasterFileWriter(str(temporary))
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    _log.info("writing %s layer %r to %s (%d x %d)", plan.role, plan.layer_name, plan.path, plan.width, plan.height)
    error = writer.writeRaster(plan.pipe, plan.width, plan.height, plan.extent, plan.crs, plan.context, feedback)
    if error != QgsRasterFileWriter.WriterError.NoError or not temporary.is_file():
        temporary.unlink(missing_ok=True)
        canceled = feedback is not None and feedback.isCanceled()
        reason = "canceled" if canceled else f"the raster writer failed (error {int(error)})"
        raise ExportError(f"Writing the {plan.role} layer {plan.layer_name!r} to a GeoTIFF: {reason}.")
    temporary.replace(plan.path)
    return plan.path


def overlap(
    before: QgsRasterLayer,
    after: QgsRasterLayer,
    crs: QgsCoordinateReferenceSystem,
    context: QgsCoordinateTransformContext,
) -> QgsRectangle:
    """The area both layers cover, in ``crs`` (empty when they do not overlap)."""
    boxes = []
    for layer in (before, after):
        box = layer.extent()
        if layer.crs() != crs:
            box = QgsCoordinateTransform(layer.crs(), crs, context).transformBoundingBox(box)
        boxes.append(box)
    return boxes[0].intersect(boxes[1])


def target_resolution(
    layers: tuple[QgsRasterLayer, ...], crs: QgsCoordinateReferenceSystem, extent: QgsRectangle, canvas: Any = None
) -> float:
    """The finest native resolution among ``layers`` in ``crs`` units; else the canvas's; else a fallback."""
    found = [native_resolution(layer) for layer in layers if layer.crs() == crs]
    values = [value for value in found if value]
    if values:
        return min(values)
    if canvas is not None and canvas.mapSettings().destinationCrs() == crs:
        return float(canvas.mapUnitsPerPixel())
    return float(max(extent.width(), extent.height()) / FALLBACK_SIDE)
