"""From a config's data sources to the datasets a run trains and validates on.

Each :class:`~training.fit.config.Source` becomes a :class:`~training.datasets.ChangeDataset` of
whole images, filtered by file stem. Training draws random crops from all of them as one
:class:`CropPool`; validation and test sets stay whole images, one per source.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from backend.errors import InputError
from training.data.augment import IGNORE
from training.datasets import ChangeDataset, get_dataset
from training.fit.config import Source
from training.prompts.prompt_cache import find_prompt_cache, load_prompt_cache

_log = logging.getLogger(__name__)
Names = tuple[list[str], list[str]]


def source_root(source: Source, data_root: str | Path) -> Path:
    """The source's folder: absolute as given, else under ``data_root``."""
    root = Path(source.root).expanduser()
    return root if root.is_absolute() else Path(data_root).expanduser() / root


def open_source(source: Source, data_root: str | Path) -> tuple[ChangeDataset, list[int]]:
    """The source's dataset (whole images) and the indices its ``only``/``exclude`` filters keep.

    Raises:
        InputError: The data is missing, or a filter names a stem the split does not hold.
    """
    dataset = get_dataset(source.dataset, source_root(source, data_root), source.split)
    stems = [Path(f.name).stem for f in dataset.files]
    for wanted in (*source.only, *source.exclude):
        if wanted not in stems:
            raise InputError(
                f"{source.dataset} at {dataset.root} ({source.split}) has no image {wanted!r} to keep or drop; "
                f"its images are {', '.join(stems[:8])}{' ...' if len(stems) > 8 else ''}"
            )
    keep = [i for i, s in enumerate(stems) if (not source.only or s in source.only) and s not in source.exclude]
    if not keep:
        raise InputError(f"{source.dataset} at {dataset.root}: the only/exclude filters leave no image")
    return dataset, keep


def eval_set(source: Source, data_root: str | Path, max_images: int = 0) -> Dataset[dict[str, Any]]:
    """A validation or test source as whole images (at most ``max_images`` when > 0)."""
    dataset, keep = open_source(source, data_root)
    return Subset(dataset, keep[:max_images] if max_images > 0 else keep)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError:
        from training.data.imageio import read_label

        return read_label(path).shape  # type: ignore[return-value]


class CropPool(Dataset[dict[str, Any]]):
    """Random crops from the images of several sources, as one training dataset.

    Args:
        sources: The training sources.
        data_root: Where relative source roots are.
        crop: Crop side; smaller images are reflect-padded and their mask padded with 255.
        repeat_by_area: List each image ``ceil(h * w / crop²)`` times, so an epoch sees large
            scenes in proportion to their area.
        cache: Keep decoded images in memory (per process).
        prompt_cache: Attach mined class names (``names_a``, ``names_b``) where a source has a cache.
        seed: With the epoch (:meth:`set_epoch`) and the index, fixes each crop.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        data_root: str | Path,
        crop: int,
        *,
        repeat_by_area: bool = False,
        cache: bool = False,
        prompt_cache: bool = True,
        seed: int = 0,
    ) -> None:
        self.crop, self.cache, self.seed, self.epoch = crop, cache, seed, 0
        self.datasets: list[ChangeDataset] = []
        self.names: list[dict[str, Names]] = []
        self.entries: list[tuple[int, int]] = []
        for source in sources:
            dataset, keep = open_source(source, data_root)
            found = find_prompt_cache(dataset.root, source.split) if prompt_cache else None
            self.names.append(load_prompt_cache(found) if found is not None else {})
            for index in keep:
                repeats = 1
                if repeat_by_area:
                    h, w = _image_size(dataset.files[index].label)
                    repeats = max(1, math.ceil(h * w / crop**2))
                self.entries += [(len(self.datasets), index)] * repeats
            self.datasets.append(dataset)
        self._memory: dict[tuple[int, int], dict[str, Any]] = {}
        _log.info(
            "training pool: %d images from %d sources, %d crops of %d² per epoch",
            sum(len(set(i for d, i in self.entries if d == k)) for k in range(len(self.datasets))),
            len(self.datasets),
            len(self.entries),
            crop,
        )

    def set_epoch(self, epoch: int) -> None:
        """Vary the crops from epoch to epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def _whole(self, key: tuple[int, int]) -> dict[str, Any]:
        if key in self._memory:
            return self._memory[key]
        sample = self.datasets[key[0]][key[1]]
        if self.cache:
            self._memory[key] = sample
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.entries[index]
        sample = self._whole(key)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image_a, image_b, mask = _random_crop(sample["image_a"], sample["image_b"], sample["mask"], self.crop, rng)
        out = {"image_a": image_a, "image_b": image_b, "mask": mask, "name": sample["name"]}
        names = self.names[key[0]].get(sample["name"])
        if names is not None:
            out["names_a"], out["names_b"] = names
        return out


def _random_crop(
    image_a: torch.Tensor, image_b: torch.Tensor, mask: torch.Tensor, crop: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    h, w = mask.shape
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    if pad_h or pad_w:
        pads = (0, pad_w, 0, pad_h)
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        image_a = torch.nn.functional.pad(image_a[None], pads, mode=mode)[0]
        image_b = torch.nn.functional.pad(image_b[None], pads, mode=mode)[0]
        mask = torch.nn.functional.pad(mask, pads, value=IGNORE)
        h, w = mask.shape
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    window = (slice(top, top + crop), slice(left, left + crop))
    return image_a[:, window[0], window[1]], image_b[:, window[0], window[1]], mask[window]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep names, and the mined class names only when every sample has them."""
    batch: dict[str, Any] = {
        "image_a": torch.stack([s["image_a"] for s in samples]),
        "image_b": torch.stack([s["image_b"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "name": [s["name"] for s in samples],
    }
    if all("names_a" in s for s in samples):
        batch["names"] = ([s["names_a"] for s in samples], [s["names_b"] for s in samples])
    return batch
