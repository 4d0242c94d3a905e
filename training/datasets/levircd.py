"""LEVIR-CD (Chen & Shi, Remote Sensing 2020): 637 pairs of 1024² Google Earth images, 0.5 m, building change."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from training.datasets.base import ChangeDataset, PairFiles, match_folders


class LEVIRCD(ChangeDataset):
    """LEVIR-CD with its official 445 / 64 / 128 split.

    Layout (also the layout ``python -m training.prepare`` writes its 256² tiles in)::

        <root>/train/A/train_1.png   before
        <root>/train/B/train_1.png   after
        <root>/train/label/train_1.png   0 = no change, 255 = change
        <root>/val/...  <root>/test/...   the same three folders

    Names are ``<split>/A/<file>``, e.g. ``train/A/train_1.png``.
    """

    TITLE: ClassVar[str] = "LEVIR-CD"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        folders = [root / split / sub for sub in ("A", "B", "label")]
        self._require(root, split, root / split, *folders)
        return match_folders(self.TITLE, root, *folders)
