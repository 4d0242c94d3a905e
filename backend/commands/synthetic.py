"""A generated, georeferenced before/after pair with known change, for the demo and tests.

The scene is a patchwork of fields crossed by roads with a village; by the later date a new
housing block and its access road have been built, and some fields changed crop (a seasonal
change that a good model should *not* report). Both dates get their own illumination,
haze and sensor noise. A ``truth.tif`` marks the built change (1) and no change (0).

The CRS (EPSG:32631, UTM 31N) and the origin are illustrative: the scene is not a real place.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.transform import from_origin

from backend.outputs.files import atomic_output

_log = logging.getLogger(__name__)

CRS = "EPSG:32631"
ORIGIN = (320_000.0, 5_650_000.0)  # illustrative UTM 31N coordinates (x west edge, y north edge)

_FIELD_COLOURS = [(86, 120, 52), (120, 140, 60), (150, 130, 80), (170, 150, 95), (96, 110, 62), (190, 170, 110)]
_ROOF_COLOURS = [(150, 60, 50), (120, 120, 125), (200, 195, 185), (110, 70, 55), (170, 90, 70)]


@dataclass(frozen=True)
class SyntheticPair:
    """Paths of a generated pair and its truth mask."""

    before: Path
    after: Path
    truth: Path


def generate_pair(folder: Path, size: int = 1024, pixel_size: float = 1.0, seed: int = 7) -> SyntheticPair:
    """Write ``before.tif``, ``after.tif`` and ``truth.tif`` (uint8, 3 bands, RGB) into ``folder``."""
    rng = np.random.default_rng(seed)
    scene = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(scene)
    _draw_fields(draw, rng, size)
    roads = _road_lines(rng, size)
    for line, width in roads:
        draw.line(line, fill=(105, 105, 100), width=width)
    village = _buildings(rng, size, count=max(8, size // 24), area=(0.05, 0.05, 0.45, 0.4), avoid=roads)
    _draw_buildings(draw, village, rng)
    before = np.asarray(scene).copy()

    # Later date: crops rotate on some fields, a new block and its road are built.
    _recolour_fields(scene, rng, size)
    for line, width in roads:  # harvested parcels end at the roads
        draw.line(line, fill=(105, 105, 100), width=width)
    truth = Image.new("L", (size, size), 0)
    truth_draw = ImageDraw.Draw(truth)
    access = [(int(size * 0.55), int(size * 0.62)), (int(size * 0.95), int(size * 0.62))]
    road_width = max(3, size // 110)
    ImageDraw.Draw(scene).line(access, fill=(110, 110, 105), width=road_width)
    truth_draw.line(access, fill=1, width=road_width)
    block = _buildings(rng, size, count=max(6, size // 40), area=(0.56, 0.66, 0.94, 0.9), avoid=roads)
    _draw_buildings(ImageDraw.Draw(scene), block, rng)
    for x0, y0, x1, y1 in block:
        truth_draw.rectangle((x0, y0, x1, y1), fill=1)
    after = np.asarray(scene).copy()
    # Shadows and texture are drawn on top, so the untouched roofs stay identical between dates.
    before_img = _photograph(before, rng, gain=1.0, haze=6.0)
    after_img = _photograph(after, rng, gain=1.08, haze=14.0)

    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(ORIGIN[0], ORIGIN[1], pixel_size, pixel_size)
    pair = SyntheticPair(folder / "before.tif", folder / "after.tif", folder / "truth.tif")
    _write(pair.before, before_img, transform)
    _write(pair.after, after_img, transform)
    _write(pair.truth, np.asarray(truth)[None], transform)
    _log.info("wrote a generated %d x %d pair (%.1f m pixels, %s) to %s", size, size, pixel_size, CRS, folder)
    return pair


def _draw_fields(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """Rectangular parcels of different crops, each with furrow stripes."""
    step = max(32, size // 6)
    for y in range(0, size, step):
        x = 0
        while x < size:
            width = int(rng.integers(step // 2, step * 2))
            colour = _FIELD_COLOURS[int(rng.integers(len(_FIELD_COLOURS)))]
            draw.rectangle((x, y, x + width, y + step), fill=colour)
            darker = tuple(max(0, c - 14) for c in colour)
            for stripe in range(y, y + step, 6):
                draw.line([(x, stripe), (x + width, stripe)], fill=darker, width=2)
            x += width


def _recolour_fields(scene: Image.Image, rng: np.random.Generator, size: int) -> None:
    """Harvest some parcels in the west half: a change of crop, not a change of land use."""
    draw = ImageDraw.Draw(scene)
    for _ in range(4):
        x0 = int(rng.integers(0, size // 2))
        y0 = int(rng.integers(size // 2, size - size // 8))
        draw.rectangle((x0, y0, x0 + size // 8, y0 + size // 10), fill=(196, 176, 120))


def _road_lines(rng: np.random.Generator, size: int) -> list[tuple[list[tuple[int, int]], int]]:
    """A main road across the scene and two side roads, as polylines with widths."""
    width = max(4, size // 80)
    main_y = int(size * 0.5)
    main = [(0, main_y), (size // 3, main_y + size // 30), (size, main_y - size // 40)]
    side_x = int(size * rng.uniform(0.25, 0.4))
    side = [(side_x, 0), (side_x + size // 25, size)]
    spur = [(int(size * 0.55), main_y), (int(size * 0.55), size)]
    return [(main, width), (side, width - 1), (spur, width - 1)]


def _buildings(
    rng: np.random.Generator,
    size: int,
    count: int,
    area: tuple[float, float, float, float],
    avoid: list[tuple[list[tuple[int, int]], int]],
) -> list[tuple[int, int, int, int]]:
    """Non-overlapping house footprints inside ``area`` (fractions of the scene)."""
    x_lo, y_lo, x_hi, y_hi = (int(v * size) for v in area)
    placed: list[tuple[int, int, int, int]] = []
    side = max(8, size // 64)
    for _ in range(count * 20):
        if len(placed) == count:
            break
        w, h = (int(v) for v in rng.integers(side, side * 2, size=2))
        x0 = int(rng.integers(x_lo, max(x_lo + 1, x_hi - w)))
        y0 = int(rng.integers(y_lo, max(y_lo + 1, y_hi - h)))
        box = (x0, y0, x0 + w, y0 + h)
        if any(_overlaps(box, other, margin=4) for other in placed):
            continue
        if any(_near_line(box, line, width + 4) for line, width in avoid):
            continue
        placed.append(box)
    return placed


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return not (a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1])


def _near_line(box: tuple[int, int, int, int], line: list[tuple[int, int]], distance: int) -> bool:
    """Whether a box's centre lies within ``distance`` of any segment of a polyline."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    reach = distance + max(box[2] - box[0], box[3] - box[1]) / 2
    for (x0, y0), (x1, y1) in itertools.pairwise(line):
        dx, dy = x1 - x0, y1 - y0
        t = max(0.0, min(1.0, ((cx - x0) * dx + (cy - y0) * dy) / max(dx * dx + dy * dy, 1)))
        if np.hypot(cx - (x0 + t * dx), cy - (y0 + t * dy)) < reach:
            return True
    return False


def _draw_buildings(
    draw: ImageDraw.ImageDraw, boxes: list[tuple[int, int, int, int]], rng: np.random.Generator
) -> None:
    """Roofs with a ridge line and a cast shadow to the south-east."""
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0 + 3, y0 + 3, x1 + 3, y1 + 3), fill=(45, 50, 40))
        roof = _ROOF_COLOURS[int(rng.integers(len(_ROOF_COLOURS)))]
        draw.rectangle((x0, y0, x1, y1), fill=roof, outline=tuple(max(0, c - 40) for c in roof))
        ridge = tuple(max(0, c - 25) for c in roof)
        if x1 - x0 > y1 - y0:
            draw.line([(x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2)], fill=ridge, width=1)
        else:
            draw.line([((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1)], fill=ridge, width=1)


def _photograph(scene: np.ndarray, rng: np.random.Generator, gain: float, haze: float) -> np.ndarray:
    """Illumination gain, additive haze and sensor noise: the two dates never match exactly."""
    image = scene.astype(np.float32) * gain + haze
    image += rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _write(path: Path, bands: np.ndarray, transform: rasterio.Affine) -> None:
    """Write a tiled GeoTIFF atomically (temporary name, then rename)."""
    profile = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": "uint8",
        "crs": CRS,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with atomic_output(path) as partial, rasterio.open(partial, "w", **profile) as dst:
        dst.write(bands)
        if bands.shape[0] == 3:
            dst.colorinterp = [
                rasterio.enums.ColorInterp.red,
                rasterio.enums.ColorInterp.green,
                rasterio.enums.ColorInterp.blue,
            ]
