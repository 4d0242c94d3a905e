"""The shared base of the change-detection datasets: file discovery per layout, lazy reading, the sample dict.

A subclass only says where a split's files are (:meth:`ChangeDataset._find_files`); reading,
the input transform (:func:`backend.raster.transform.unit_image` on the whole decoded image), label
binarisation and the random crop live here, so every dataset yields the same sample::

    {"image_a": float32 (3, H, W) in [0, 1], "image_b": same, "mask": int64 (H, W) 0/1, 255 = padding,
     "name": dataset-relative str}
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from backend.errors import InputError
from backend.raster.transform import unit_image
from training.data.imageio import read_label, read_rgb

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
IGNORE_INDEX = 255
_SHOWN = 5  # how many unmatched names an error lists


class PairFiles(NamedTuple):
    """The three files of one sample; ``name`` is dataset-relative (never absolute)."""

    before: Path
    after: Path
    label: Path
    name: str


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``train_2`` before ``train_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def layout_tree(patterns: Iterable[str]) -> str:
    """Render ``["train/A/*.png", "train/B/*.png"]`` as an indented tree under ``<root>/``."""
    lines = ["<root>/"]
    seen: set[tuple[str, ...]] = set()
    for pattern in patterns:
        parts = pattern.split("/")
        if len(parts) > 1 and "*" in parts[-1]:  # "A/*.png" stays one leaf
            parts = [*parts[:-2], f"{parts[-2]}/{parts[-1]}"]
        for depth in range(len(parts)):
            key = tuple(parts[: depth + 1])
            if key not in seen:
                seen.add(key)
                lines.append("  " * (depth + 1) + parts[depth] + ("/" if depth < len(parts) - 1 else ""))
    return "\n".join(lines)


def layout_error(title: str, root: Path, patterns: Sequence[str], problem: str) -> InputError:
    """An error that names the problem and shows the layout ``title`` expects under ``root``."""
    flat = ", ".join(f"<root>/{p}" for p in patterns)
    return InputError(
        f"{title} expects {flat}; {problem}.\nExpected layout (<root> = {root}):\n{layout_tree(patterns)}\n"
        "Point the data root at the folder that holds this layout."
    )


def first_few(names: Sequence[str]) -> str:
    """``"a, b, c, d, e and 3 more"``: the first names of a list for an error message."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def image_files(folder: Path) -> dict[str, Path]:
    """The image files directly in ``folder`` by stem (hidden files and other suffixes skipped)."""
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise InputError(f"{folder} holds both {found[path.stem].name} and {path.name}: keep one file per name.")
        found[path.stem] = path
    return found


def match_folders(title: str, root: Path, before: Path, after: Path, label: Path) -> list[PairFiles]:
    """Pair the images of three folders by file stem, in natural order; names are relative to ``root``.

    Raises:
        InputError: A folder is empty, or some file has no partner in another folder (the first
            few are named).
    """
    maps = {folder: image_files(folder) for folder in (before, after, label)}
    if not maps[before]:
        raise InputError(f"{title}: no images (.png, .jpg, .tif, ...) in {before}. Check the data root.")
    stems = set(maps[before]) | set(maps[after]) | set(maps[label])
    problems = []
    for folder, files in maps.items():
        missing = sorted(stems - set(files), key=natural_key)
        if missing:
            problems.append(f"{folder} lacks {first_few(missing)}")
    if problems:
        raise InputError(
            f"{title}: the A/B/label folders do not hold the same file names: {'; '.join(problems)}. "
            "Every image needs a partner of the same name in each folder."
        )
    return [
        PairFiles(maps[before][s], maps[after][s], maps[label][s], maps[before][s].relative_to(root).as_posix())
        for s in sorted(stems, key=natural_key)
    ]


class ChangeDataset(Dataset[dict[str, Any]]):
    """A bi-temporal change-detection dataset on disk.

    Args:
        root: The dataset's folder (its layout is in each subclass's docstring).
        split: Which split to read; ``SPLITS`` lists the ones the dataset has.
        crop: Side of a random square crop (same window for both dates and the mask); images
            smaller than the crop are reflect-padded and their mask padded with 255 (ignore).
            None returns whole images.
        seed: Seed of the crop positions. In DataLoader workers it is combined with the
            worker's seed, so crops differ per worker and per epoch yet repeat under
            ``torch.manual_seed``.
    """

    TITLE: ClassVar[str] = "change dataset"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")  # None: any split name
    LABEL_THRESHOLD: ClassVar[int] = 0  # label values above this are change

    def __init__(
        self, root: str | os.PathLike[str], split: str = "train", *, crop: int | None = None, seed: int = 0
    ) -> None:
        self.root = Path(root)
        self.split = split
        if crop is not None and crop < 1:
            raise InputError(f"crop={crop} must be a positive number of pixels, or None for whole images.")
        self.crop = crop
        self.seed = seed
        if self.SPLITS is not None and split not in self.SPLITS:
            raise InputError(f"{self.TITLE} has no split {split!r}; choose one of {', '.join(self.SPLITS)}.")
        if not self.root.is_dir():
            raise layout_error(self.TITLE, self.root, self.layout(split), f"{self.root} is not a folder")
        self.files: list[PairFiles] = self._find_files(self.root, split)
        if not self.files:
            raise InputError(f"{self.TITLE} split {split!r} under {self.root} holds no samples.")
        self._rng: np.random.Generator | None = None
        self._rng_key: int | None = None

    def layout(self, split: str) -> list[str]:
        """The expected files of ``split`` as ``<root>``-relative patterns (for error messages)."""
        return [f"{split}/A/*.png", f"{split}/B/*.png", f"{split}/label/*.png"]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        """The samples of ``split``, in a fixed order."""
        raise NotImplementedError

    def _require(self, root: Path, split: str, *paths: Path) -> None:
        """Raise the layout error for the first of ``paths`` that is missing."""
        for path in paths:
            if not path.exists():
                raise layout_error(self.TITLE, root, self.layout(split), f"{path} is missing")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        files = self.files[index]
        raw_a, raw_b = read_rgb(files.before), read_rgb(files.after)
        label = read_label(files.label)
        shapes = {raw_a.shape[1:], raw_b.shape[1:], label.shape}
        if len(shapes) != 1:
            raise InputError(
                f"{self.TITLE} sample {files.name}: before {raw_a.shape[1:]}, after {raw_b.shape[1:]} and "
                f"label {label.shape} differ in size; the three files must cover the same pixels."
            )
        return self._sample(unit_image(raw_a), unit_image(raw_b), label, files.name)

    def _sample(self, image_a: np.ndarray, image_b: np.ndarray, label: np.ndarray, name: str) -> dict[str, Any]:
        """The sample dict from ``[0, 1]`` images and a label: the mask thresholded, the crop cut."""
        mask = (label > self.LABEL_THRESHOLD).astype(np.int64)
        if self.crop is not None:
            image_a, image_b, mask = self._random_crop(self.crop, image_a, image_b, mask)
        return {
            "image_a": torch.from_numpy(np.ascontiguousarray(image_a)),
            "image_b": torch.from_numpy(np.ascontiguousarray(image_b)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "name": name,
        }

    def _generator(self) -> np.random.Generator:
        """The crop RNG: one per process, reseeded when a DataLoader starts a new worker iteration."""
        info = get_worker_info()
        key = None if info is None else int(info.seed)
        if self._rng is None or key != self._rng_key:
            self._rng = np.random.default_rng([self.seed] if key is None else [self.seed, key])
            self._rng_key = key
        return self._rng

    def _random_crop(
        self, size: int, image_a: np.ndarray, image_b: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        height, width = mask.shape
        pad_h, pad_w = max(0, size - height), max(0, size - width)
        if pad_h or pad_w:
            spec = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
            image_a = np.pad(image_a, ((0, 0), *spec), mode="reflect")
            image_b = np.pad(image_b, ((0, 0), *spec), mode="reflect")
            mask = np.pad(mask, spec, mode="constant", constant_values=IGNORE_INDEX)
            height, width = mask.shape
        rng = self._generator()
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        window = (slice(top, top + size), slice(left, left + size))
        return image_a[(slice(None), *window)], image_b[(slice(None), *window)], mask[window]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"
