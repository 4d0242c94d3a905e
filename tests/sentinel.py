"""Generated Sentinel-2-like band files: an OSCD city in the release layout, two dates on different grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

# About 10 m at 48.7 N (Saclay): the second date's pixels are a little larger, as in the real release.
LON0, LAT0 = 2.15, 48.75
STEP_1 = (1.36e-4, 9.0e-5)
STEP_2 = (1.37e-4, 9.1e-5)
RESOLUTIONS = {"B01": 6, "B02": 1, "B03": 1, "B04": 1, "B05": 2, "B08": 1, "B8A": 2, "B11": 2, "B12": 2}
PREFIX = {1: "S2A_OPER_MSI_L1C_TL_SGS__20160315T201048_A003809_T31UDP", 2: "S2A_OPER_MSI_L1C_TL_SGS__20170829_T31UDQ"}


def scene(height: int, width: int, band: str, date: int) -> np.ndarray:
    """Smooth uint16 reflectance-like values per band, with a bright block in date 2 (the change)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 900 + 300 * np.sin(rows / 9.0) * np.cos(cols / 13.0) + 20 * int(band.strip("B").replace("8A", "9"))
    if date == 2:
        base[height // 3 : height // 2, width // 3 : width // 2] += 1500
    return np.clip(base, 1, 65535).astype(np.uint16)


def write_band(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint16"}
    with rasterio.open(path, "w", crs="EPSG:4326", transform=transform, **profile) as dst:
        dst.write(data, 1)


def write_date(folder: Path, date: int, height: int, width: int, bands: dict[str, int] | None = None) -> None:
    """One date's band files at their native resolution (10 m bands at ``height x width``)."""
    folder.mkdir(parents=True, exist_ok=True)
    step_x, step_y = STEP_1 if date == 1 else STEP_2
    for band, factor in (bands or RESOLUTIONS).items():
        h, w = -(-height // factor), -(-width // factor)
        fine = scene(h * factor, w * factor, band, date)
        coarse = fine.reshape(h, factor, w, factor).mean(axis=(1, 3)).astype(np.uint16)
        transform = Affine(step_x * factor, 0, LON0, 0, -step_y * factor, LAT0)
        write_band(folder / f"{PREFIX[date]}_{band}.tif", coarse, transform)


def write_oscd_city(root: Path, city: str, height: int = 60, width: int = 80) -> Path:
    """``root/city`` in the release layout; the label is the changed block on date 1's 10 m grid."""
    folder = root / city
    write_date(folder / "imgs_1", 1, height, width)
    write_date(folder / "imgs_2", 2, height - 2, width - 3)
    label = np.zeros((height, width), dtype=np.uint8)
    label[height // 3 : height // 2, width // 3 : width // 2] = 255
    (folder / "cm").mkdir(parents=True)
    Image.fromarray(label).save(folder / "cm" / "cm.png")
    (folder / "dates.txt").write_text("date_1: 20160315\ndate_2: 20170829\n", encoding="utf-8")
    return folder
