"""preview.png: before | after | after with the change mask in red, from decimated reads only."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

PREVIEW_SIDE = 768
_GAP = 8
_RED = np.array([230, 30, 40], dtype=np.float32)


class OverviewReader(Protocol):
    """What the preview needs from :class:`backend.io.RasterPair`."""

    def read_overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both dates ``(3, h, w)`` in [0, 1] and validity ``(h, w)``, decimated to ``max_side``."""
        ...


def write_preview(pair: OverviewReader, mask_path: Path, out_path: Path, max_side: int = PREVIEW_SIDE) -> Path:
    """Write the three-panel preview PNG (atomically) and return its path."""
    image_a, image_b, valid = pair.read_overview(max_side)
    height, width = valid.shape
    with rasterio.open(mask_path) as src:
        mask = src.read(1, out_shape=(height, width), resampling=Resampling.nearest)
    change = (mask == 1) & valid
    before = _to_rgb(image_a, valid)
    after = _to_rgb(image_b, valid)
    overlay = after.astype(np.float32)
    overlay[change] = 0.35 * overlay[change] + 0.65 * _RED
    panels = [before, after, overlay.astype(np.uint8)]
    canvas = np.full((height, width * 3 + _GAP * 2, 3), 255, dtype=np.uint8)
    for index, panel in enumerate(panels):
        left = index * (width + _GAP)
        canvas[:, left : left + width] = panel
    partial = out_path.with_name(out_path.name + ".partial")
    Image.fromarray(canvas).save(partial, format="PNG")
    partial.replace(out_path)
    return out_path


def _to_rgb(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Float (3, h, w) in [0, 1] to uint8 (h, w, 3); nodata shown light grey."""
    rgb = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()
    rgb[~valid] = 220
    return rgb
