"""Turn two raster layers and the chosen options into a run: the worker's parameters and any exports.

Shared by the dock and the Processing algorithm (one code path). Runs on the main thread: it reads
layers and clones the providers of layers that are not files; the exports themselves are written
later, off the main thread (:func:`qgis_clipcd.detection.layer_export.write_export`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle

from qgis_clipcd.detection.layer_export import (
    ExportError,
    RasterExport,
    file_path,
    overlap,
    plan_export,
    target_resolution,
)
from qgis_clipcd.params import RunParams

#: Sub-folder of the run's output folder for the exported inputs (removed after the run).
INPUTS = "inputs"


@dataclass
class PreparedRun:
    """What a task needs: the worker's parameters and the layers to write first.

    Attributes:
        params: The worker's parameters (paths of exports already filled in).
        exports: Layers that are not files, to write before the worker starts.
    """

    params: RunParams
    exports: list[RasterExport] = field(default_factory=list)

    @property
    def inputs_dir(self) -> Path:
        """Where the exports go (inside the output folder)."""
        return Path(self.params.out_dir) / INPUTS


def prepare_run(
    before: QgsRasterLayer,
    after: QgsRasterLayer,
    params: RunParams,
    *,
    extent: QgsRectangle | None = None,
    canvas: Any = None,
    project: QgsProject | None = None,
) -> PreparedRun:
    """The run for ``before`` and ``after`` with the options in ``params`` (its paths are replaced).

    Args:
        before: The earlier raster (its CRS is the run's).
        after: The later raster.
        params: Options; ``before``/``after`` are set from the layers, ``extent`` from ``extent``.
        extent: The area to process in the before raster's CRS; None processes the overlap.
        canvas: The map canvas, for the resolution of web layers when no file layer gives one.
        project: For the coordinate transform context (default: the current project).

    Raises:
        ExportError: a layer that is not a file cannot be written (message names it).
    """
    project = project or QgsProject.instance()
    context = project.transformContext()
    crs = before.crs()
    box = None if extent is None else (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
    paths = {"before": file_path(before), "after": file_path(after)}
    exports: list[RasterExport] = []
    if None in paths.values():
        area = overlap(before, after, crs, context)
        if extent is not None:
            area = area.intersect(extent)
        if area.isEmpty():
            raise ExportError("The rasters and the chosen extent do not overlap; choose another extent.")
        resolution = target_resolution((before, after), crs, area, canvas)
        folder = Path(params.out_dir) / INPUTS
        for role, layer in (("before", before), ("after", after)):
            if paths[role] is None:
                plan = plan_export(layer, role, folder, crs, area, resolution, context)
                exports.append(plan)
                paths[role] = str(plan.path)
    ready = replace(params, before=str(paths["before"]), after=str(paths["after"]), extent=box)
    return PreparedRun(ready, exports)
