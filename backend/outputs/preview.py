"""preview.png: before | after | after with the change mask in red.

:class:`PreviewSampler` keeps every n-th pixel of the images as the predictor reads the tiles
and of the mask as its rows are written, on one lattice, so the preview costs no extra reads
and the red overlay sits exactly on the pixels it marks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.outputs.files import atomic_output

PREVIEW_SIDE = 768
_GAP = 8
_RED = np.array([230, 30, 40], dtype=np.float32)


class PreviewSampler:
    """Wraps a tile reader and keeps a decimated copy of the images and the mask.

    Pixels on the lattice (every ``step``-th row and column of the grid) are copied from each
    tile as it is read (overlapping tiles write the same values) and from each block of mask
    rows as it is written. ``read`` runs on the predictor's reader thread, ``add_mask_rows`` on
    its writer thread; they fill separate arrays, read back after prediction.
    """

    def __init__(self, reader: Any, height: int, width: int, max_side: int = PREVIEW_SIDE) -> None:
        self.reader = reader
        self.step = max(1, math.ceil(max(height, width) / max_side))
        self.height, self.width = height, width
        shape = (math.ceil(height / self.step), math.ceil(width / self.step))
        self._a = np.zeros((3, *shape), dtype=np.float32)
        self._b = np.zeros((3, *shape), dtype=np.float32)
        self._valid = np.zeros(shape, dtype=bool)
        self._mask = np.zeros(shape, dtype=np.uint8)

    def read(self, window: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read through to the wrapped reader, keeping the lattice pixels of the window."""
        image_a, image_b, valid = self.reader.read(window)
        row0, col0 = int(window.row_off), int(window.col_off)
        rows = _lattice(row0, valid.shape[0], self.height, self.step)
        cols = _lattice(col0, valid.shape[1], self.width, self.step)
        if rows.size and cols.size:
            target = np.ix_(rows // self.step, cols // self.step)
            source = np.ix_(rows - row0, cols - col0)
            self._a[(slice(None), *target)] = image_a[(slice(None), *source)]
            self._b[(slice(None), *target)] = image_b[(slice(None), *source)]
            self._valid[target] = valid[source]
        return image_a, image_b, valid

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decimated image_a, image_b ``(3, h, w)``, validity and mask ``(h, w)`` collected so far."""
        return self._a, self._b, self._valid, self._mask

    def add_mask_rows(self, row_start: int, mask: np.ndarray) -> None:
        """Keep the lattice pixels of mask rows ``(rows, width)`` starting at grid row ``row_start``."""
        rows = _lattice(row_start, mask.shape[0], self.height, self.step)
        if rows.size:
            self._mask[rows // self.step] = mask[rows - row_start, :: self.step]


def _lattice(start: int, length: int, limit: int, step: int) -> np.ndarray:
    """Grid indexes in ``[start, start + length)`` and inside ``[0, limit)`` that are multiples of ``step``."""
    first = max(0, start + (-start) % step)
    return np.arange(first, min(start + length, limit), step)


def write_preview(sampler: PreviewSampler, out_path: Path) -> Path:
    """Write the three-panel preview PNG (atomically) and return its path."""
    image_a, image_b, valid, mask = sampler.samples()
    height, width = valid.shape
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
    with atomic_output(out_path) as partial:
        Image.fromarray(canvas).save(partial, format="PNG", compress_level=1)
    return out_path


def _to_rgb(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Float (3, h, w) in [0, 1] to uint8 (h, w, 3) with a 1-99 % display stretch; nodata light grey.

    The stretch is for the eye only, on top of whatever the model was fed: raw 8-bit satellite
    images are often dark and flat.
    """
    shown = np.array(image, dtype=np.float32)
    for band in shown:
        values = band[valid]
        if values.size:
            low, high = np.percentile(values, [1.0, 99.0])
            if high > low:
                band -= low
                band /= high - low
    rgb = (np.clip(shown, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()
    rgb[~valid] = 220
    return rgb
