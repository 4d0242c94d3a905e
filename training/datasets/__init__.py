"""Change-detection datasets on disk: one class per benchmark layout over :class:`ChangeDataset`.

``get_dataset("levir-cd", root, "train", crop=256)`` builds one by name; each sample is
``{"image_a", "image_b", "mask", "name"}`` (see :mod:`training.datasets.base`).
"""

from __future__ import annotations

import os
from typing import Any

from backend.errors import InputError
from training.datasets.base import ChangeDataset, PairFiles
from training.datasets.cdd import CDD
from training.datasets.folder import FolderDataset
from training.datasets.levircd import LEVIRCD
from training.datasets.levircd_plus import LEVIRCDPlus
from training.datasets.oscd import OSCD
from training.datasets.sysucd import SYSUCD
from training.datasets.txtlist import TxtListDataset
from training.datasets.whucd import WHUCD

DATASETS: dict[str, type[ChangeDataset]] = {
    "levir-cd": LEVIRCD,
    "levir-cd-plus": LEVIRCDPlus,
    "whu-cd": WHUCD,
    "cdd": CDD,
    "sysu-cd": SYSUCD,
    "oscd": OSCD,
    "folder": FolderDataset,
    "txt-list": TxtListDataset,
}


def get_dataset(name: str, root: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> ChangeDataset:
    """The dataset ``name`` (a key of :data:`DATASETS`) at ``root``; ``kwargs`` go to its constructor (crop, seed).

    Raises:
        InputError: ``name`` is not a known dataset, or the data is not laid out as expected.
    """
    try:
        cls = DATASETS[name]
    except KeyError:
        raise InputError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.") from None
    return cls(root, split, **kwargs)


__all__ = [
    "CDD",
    "DATASETS",
    "LEVIRCD",
    "OSCD",
    "SYSUCD",
    "WHUCD",
    "ChangeDataset",
    "FolderDataset",
    "LEVIRCDPlus",
    "PairFiles",
    "TxtListDataset",
    "get_dataset",
]
