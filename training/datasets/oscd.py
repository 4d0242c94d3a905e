"""OSCD (Daudt et al., IGARSS 2018) in its release layout: Sentinel-2 L1C band files of 24 cities, 10 m.

Layout (the Onera release; labels come in a second archive with the same city folders)::

    <root>/train.txt, <root>/test.txt        one line: comma-separated city names
    <root>/<city>/imgs_1/*_B01.tif ... *_B12.tif, *_B8A.tif   date 1, native 10/20/60 m
    <root>/<city>/imgs_2/...                 date 2, possibly on another grid than date 1
    <root>/<city>/imgs_1_rect/, imgs_2_rect/ (optional) the bands resampled to 10 m, no georeference
    <root>/<city>/cm/cm.png                  the change label on date 1's 10 m grid (nonzero = change)
    <root>/<city>/dates.txt

Every chosen band of both dates is resampled (bilinear) onto date 1's 10 m grid (its B02 file's
grid, the finest band) with :mod:`backend.raster.stack`, so the label, both dates and the bands
share pixels. The split ``all`` takes every city folder; other splits read ``<split>.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backend.errors import InputError
from backend.raster.stack import band_files, finest_grid, read_onto
from backend.raster.transform import unit_image
from training.data.imageio import read_label
from training.datasets.base import ChangeDataset, PairFiles, layout_error, natural_key

DEFAULT_BANDS = ("B04", "B03", "B02")


def read_city_bands(city: Path, date: int, bands: tuple[str, ...]) -> np.ndarray:
    """Date ``date`` (1 or 2) of ``city`` as raw float32 ``(len(bands), h, w)`` on date 1's 10 m grid."""
    files = band_files(city / f"imgs_{date}")
    missing = [code for code in bands if code not in files]
    if missing:
        raise InputError(f"{city / f'imgs_{date}'} has no band {', '.join(missing)}; it has {', '.join(files)}.")
    reference = band_files(city / "imgs_1")
    grid = finest_grid(list(reference.values()))
    return np.stack([read_onto(files[code], grid) for code in bands])


class OSCD(ChangeDataset):
    """The OSCD release layout (see the module docstring); samples are whole cities.

    Args:
        bands: Band codes read as the three model channels, red, green, blue by default.
        stretch: How the uint16 bands become ``[0, 1]`` (``backend.raster.transform.unit_image``'s mode).
    """

    TITLE: ClassVar[str] = "OSCD (release layout)"
    SPLITS: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        crop: int | None = None,
        seed: int = 0,
        bands: tuple[str, ...] = DEFAULT_BANDS,
        stretch: str = "auto",
    ) -> None:
        self.bands = tuple(code.upper() for code in bands)
        self.stretch = stretch
        super().__init__(root, split, crop=crop, seed=seed)

    def layout(self, split: str) -> list[str]:
        """The release's files for one city."""
        return [f"{split}.txt", "<city>/imgs_1/*_B04.tif", "<city>/imgs_2/*_B04.tif", "<city>/cm/cm.png"]

    def _cities(self, root: Path, split: str) -> list[str]:
        if split == "all":
            return sorted((p.name for p in root.iterdir() if (p / "imgs_1").is_dir()), key=natural_key)
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise layout_error(self.TITLE, root, self.layout(split), f"{listing} is missing (or use split 'all')")
        names = listing.read_text(encoding="utf-8").replace("\n", ",").split(",")
        return [name.strip() for name in names if name.strip()]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        files = []
        for city in self._cities(root, split):
            folder = root / city
            self._require(root, split, folder / "imgs_1", folder / "imgs_2", folder / "cm" / "cm.png")
            files.append(PairFiles(folder / "imgs_1", folder / "imgs_2", folder / "cm" / "cm.png", city))
        return files

    def raw_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Both dates' raw bands on date 1's 10 m grid and the label, before any stretch."""
        city = self.files[index].before.parent
        raw_a = read_city_bands(city, 1, self.bands)
        raw_b = read_city_bands(city, 2, self.bands)
        label = read_label(self.files[index].label)
        if label.shape != raw_a.shape[1:]:
            raise InputError(
                f"{self.files[index].label} is {label.shape[1]}x{label.shape[0]} pixels but date 1's 10 m grid is "
                f"{raw_a.shape[2]}x{raw_a.shape[1]}; the label must lie on date 1's 10 m grid."
            )
        return raw_a, raw_b, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw_a, raw_b, label = self.raw_pair(index)
        valid = (raw_a > 0).all(axis=0) & (raw_b > 0).all(axis=0)
        image_a = unit_image(raw_a.astype(np.uint16), valid, self.stretch)
        image_b = unit_image(raw_b.astype(np.uint16), valid, self.stretch)
        return self._sample(image_a, image_b, label, self.files[index].name)
