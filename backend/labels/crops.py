"""Square crops around each change polygon, from both dates, ready for CLIP.

A polygon's bounding box is padded on every side by ``context`` times its larger side (CLIP sees
what surrounds the change), squared about its centre, and read from the run's raster pair, so the
crop gets the run's band choice, alignment and radiometric transform. Each crop is resized to the
CLIP input size with antialiasing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.windows import Window
from torch import Tensor

from backend.raster.io import RasterPair

#: Padding on each side, as a fraction of the bounding box's larger side.
CONTEXT = 0.25
#: The smallest crop side in pixels: tiny polygons still show their surroundings.
MIN_SIDE = 24
#: The largest crop side read, in pixels: a huge polygon is seen through its central part (CLIP looks at
#: 224 px anyway), so one field-sized change cannot make a run read gigabytes.
MAX_SIDE = 2048


def square_windows(
    bounds: np.ndarray,
    transform: Affine,
    *,
    context: float = CONTEXT,
    min_side: int = MIN_SIDE,
    max_side: int = MAX_SIDE,
) -> list[Window]:
    """One square whole-pixel window per ``(xmin, ymin, xmax, ymax)`` row of ``bounds`` (CRS units).

    The window may reach past the grid; the reader fills the outside with zeros.
    """
    inverse = ~transform
    windows = []
    for xmin, ymin, xmax, ymax in np.asarray(bounds, dtype=np.float64).reshape(-1, 4):
        corners = [inverse * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
        cols, rows = [c for c, _ in corners], [r for _, r in corners]
        width, height = max(cols) - min(cols), max(rows) - min(rows)
        side = min(max_side, max(min_side, math.ceil(max(width, height) * (1 + 2 * context))))
        col_centre, row_centre = (min(cols) + max(cols)) / 2, (min(rows) + max(rows)) / 2
        windows.append(Window(round(col_centre - side / 2), round(row_centre - side / 2), side, side))
    return windows


def read_crops(pair: RasterPair, windows: Sequence[Window], size: int) -> tuple[Tensor, Tensor]:
    """The before and after crops of ``windows``, each ``(N, 3, size, size)`` float32 in ``[0, 1]``."""
    before, after = [], []
    for window in windows:
        image_a, image_b, _ = pair.read(window)
        before.append(_resize(image_a, size))
        after.append(_resize(image_b, size))
    if not windows:
        empty = torch.zeros((0, 3, size, size))
        return empty, empty.clone()
    return torch.stack(before), torch.stack(after)


def batches(windows: Sequence[Window], size: int) -> Iterator[tuple[int, Sequence[Window]]]:
    """``(start, windows[start:start + size])`` for consecutive batches."""
    for start in range(0, len(windows), size):
        yield start, windows[start : start + size]


def _resize(image: np.ndarray, size: int) -> Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    if tensor.shape[-2:] == (size, size):
        return tensor[0]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
