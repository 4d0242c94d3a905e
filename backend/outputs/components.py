"""Probability statistics per connected change region, streamed over row strips.

Each 4-connected region of change pixels (the same regions ``gdal_polygonize`` turns into
polygons) gets the mean and maximum of the probability raster over exactly its pixels. Regions
are labelled strip by strip (:func:`scipy.ndimage.label`); labels that touch across a strip
boundary are merged with a union-find, so memory depends on the strip, not on the raster.
A polygon is matched to its region through one interior point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from backend.progress import CancelFn, ProgressFn, check_canceled

# Pixels per strip: 4 Mi px keeps the strip's arrays near 50 MiB whatever the raster's size.
STRIP_PIXELS = 4 * 2**20


@dataclass
class _Regions:
    """Partial statistics of every strip-local label, and which labels belong together."""

    parent: list[int] = field(default_factory=lambda: [0])
    sums: list[np.ndarray] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    maxes: list[np.ndarray] = field(default_factory=list)

    def add(self, count: int, sums: np.ndarray, counts: np.ndarray, maxes: np.ndarray) -> int:
        """Register ``count`` new labels; return the id offset they got."""
        offset = len(self.parent) - 1
        self.parent.extend(range(offset + 1, offset + count + 1))
        self.sums.append(sums)
        self.counts.append(counts)
        self.maxes.append(maxes)
        return offset

    def find(self, label: int) -> int:
        parent = self.parent
        while parent[label] != label:
            parent[label] = parent[parent[label]]
            label = parent[label]
        return label

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Root of every label, and sum, count and max of every root."""
        roots = np.array([self.find(label) for label in range(len(self.parent))], dtype=np.int64)
        size = len(self.parent)
        sums: np.ndarray = np.zeros(size)
        counts: np.ndarray = np.zeros(size)
        maxes: np.ndarray = np.full(size, -np.inf)
        if size > 1:
            owner = roots[1:]
            sums = np.bincount(owner, weights=np.concatenate(self.sums), minlength=size)
            counts = np.bincount(owner, weights=np.concatenate(self.counts), minlength=size)
            np.maximum.at(maxes, owner, np.concatenate(self.maxes))
        return roots, sums, counts, maxes


def region_stats(
    mask_path: str | os.PathLike[str],
    probability_path: str | os.PathLike[str],
    rows: np.ndarray,
    cols: np.ndarray,
    progress: ProgressFn,
    is_canceled: CancelFn,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max probability in [0, 1] of the change region under each ``(row, col)`` pixel.

    Returns NaN for a pixel that is not a change pixel.
    """
    regions = _Regions()
    point_labels = np.zeros(len(rows), dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    with rasterio.open(mask_path) as mask_src, rasterio.open(probability_path) as prob_src:
        height, width = mask_src.height, mask_src.width
        scale = 1.0 / 255.0 if np.dtype(prob_src.dtypes[0]).kind in "ui" else 1.0
        strip = max(1, STRIP_PIXELS // max(width, 1))
        previous_last_row: np.ndarray | None = None
        for start in range(0, height, strip):
            check_canceled(is_canceled)
            stop = min(start + strip, height)
            window = Window(0, start, width, stop - start)  # type: ignore[call-arg]
            change = mask_src.read(1, window=window) == 1
            local, count = ndimage.label(change)  # default structure: 4-connectivity
            probability = prob_src.read(1, window=window).astype(np.float32) * np.float32(scale)
            inside = local > 0
            ids = local[inside] - 1
            values = probability[inside]
            maxes = np.full(count, -np.inf)
            np.maximum.at(maxes, ids, values)  # ndimage.maximum sorts every pixel: far slower
            offset = regions.add(
                count,
                np.bincount(ids, weights=values, minlength=count),
                np.bincount(ids, minlength=count).astype(np.float64),
                maxes,
            )
            labels = np.where(inside, local + offset, 0)
            if previous_last_row is not None:
                touching = (previous_last_row > 0) & (labels[0] > 0)
                for a, b in set(zip(previous_last_row[touching].tolist(), labels[0][touching].tolist(), strict=True)):
                    regions.union(a, b)
            first, last = np.searchsorted(rows[order], [start, stop])
            picked = order[first:last]
            point_labels[picked] = labels[rows[picked] - start, cols[picked]]
            previous_last_row = labels[-1].copy()
            progress(stop / height, "probability statistics")
    roots, sums, counts, maxes = regions.merged()
    root_of_point = roots[point_labels]
    hit = point_labels > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(hit, sums[root_of_point] / np.maximum(counts[root_of_point], 1), np.nan)
    return means, np.where(hit, maxes[root_of_point], np.nan)
