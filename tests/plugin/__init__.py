"""Tests of the QGIS plugin ``qgis_clipcd`` on real QGIS, with real worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.rasters import utm_transform, write_raster


def write_pair(folder: Path) -> tuple[Path, Path]:
    """Two 64 x 64 px GeoTIFFs at 10 m (one tile): the after image gains a bright 20 x 16 px block."""
    before = np.full((3, 64, 64), 60, dtype=np.uint8)
    before[1] = 90
    after = before.copy()
    after[:, 20:36, 24:44] = 240
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_raster(folder / "before.tif", before, transform=utm_transform()),
        write_raster(folder / "after.tif", after, transform=utm_transform()),
    )
