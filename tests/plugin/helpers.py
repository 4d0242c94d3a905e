"""Shared bits of the plugin tests: tiny raster pairs, a fake model file, waiting for a task."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.rasters import utm_transform, write_raster


def raster_pair(
    tmp_path: Path, size: tuple[int, int] = (96, 128), *, after_crs: str = "EPSG:32631"
) -> tuple[Path, Path]:
    """Two small RGB GeoTIFFs at 10 m; the after one gains a bright square."""
    height, width = size
    before = np.full((3, height, width), 60, dtype=np.uint8)
    after = before.copy()
    after[:, height // 4 : height // 2, width // 4 : width // 2] = 240
    tmp_path.mkdir(parents=True, exist_ok=True)
    return (
        write_raster(tmp_path / "before.tif", before, transform=utm_transform()),
        write_raster(tmp_path / "after.tif", after, transform=utm_transform(), crs=after_crs),
    )


def fake_model(path: Path, card: dict[str, Any]) -> Path:
    """A safetensors file with a card and no tensors (enough for the card reader)."""
    header = json.dumps({"__metadata__": {"clipcd_card": json.dumps(card)}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def wait_for_task(task: Any, timeout: float = 120.0) -> bool:
    """Process events until ``task`` completed or terminated (finished() has run); True if it ended."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    ended: list[bool] = []
    task.taskCompleted.connect(lambda: ended.append(True))
    task.taskTerminated.connect(lambda: ended.append(False))
    deadline = time.monotonic() + timeout
    while not ended and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    # let the task manager drop the finished task
    for _ in range(50):
        QCoreApplication.processEvents()
        if not QgsApplication.taskManager().activeTasks():
            break
        time.sleep(0.01)
    return bool(ended)


def run_dock(iface: Any, before: Path, after: Path, output: Path, *, threshold: float, min_area: float = 0.0) -> Any:
    """Run the dock as an analyst would on two raster files (CPU, written to ``output``); the finished dock.

    The layers are added to the project; the dock's remembered model, extent and prompt choice are
    cleared first so the run is the default one.
    """
    from qgis.core import QgsProject, QgsRasterLayer, QgsSettings

    from qgis_clipcd.dock.widget import ClipCDDock

    layers = [QgsRasterLayer(str(path), path.stem) for path in (before, after)]
    QgsProject.instance().addMapLayers(layers)
    for key in ("model", "extent", "auto_prompts"):
        QgsSettings().remove(f"clipcd/{key}")
    dock = ClipCDDock(iface, check_engine=False)
    dock.form.before.setLayer(layers[0])
    dock.form.after.setLayer(layers[1])
    dock.form.threshold.setValue(threshold)
    dock.form.min_area.setValue(min_area)
    dock.form.device.setCurrentIndex(dock.form.device.findData("cpu"))
    dock.form.output.setFilePath(str(output))
    dock.start()
    assert dock.task is not None and wait_for_task(dock.task, timeout=300)
    assert dock.status.text().startswith("Done"), dock.status.text()
    return dock
