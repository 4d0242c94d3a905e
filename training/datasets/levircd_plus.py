"""LEVIR-CD+ (the LEVIR-CD authors' extension): 985 pairs of 1024² images, train / test only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from training.datasets.base import ChangeDataset, PairFiles, match_folders

VAL_EVERY = 10


class LEVIRCDPlus(ChangeDataset):
    """LEVIR-CD+ with a deterministic validation split taken from its training images.

    Layout::

        <root>/train/A/*.png  <root>/train/B/*.png  <root>/train/label/*.png   (637 pairs)
        <root>/test/A/*.png   <root>/test/B/*.png   <root>/test/label/*.png    (348 pairs)

    The published dataset has no validation split, so ``val`` is made from ``train`` by a fixed
    rule: sort the training pairs in natural order of their file names (``train_2`` before
    ``train_10``) and take every 10th one, starting with the first (positions 0, 10, 20, ...).
    ``train`` is the rest. On the full dataset that is 64 whole images for val and 573 for
    train, so no validation pixel was ever seen in training. Names are ``train/A/<file>`` for
    both ``train`` and ``val`` (the files stay where they are).
    """

    TITLE: ClassVar[str] = "LEVIR-CD+"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")

    def layout(self, split: str) -> list[str]:
        """Val is read from the train folders."""
        return super().layout("train" if split == "val" else split)

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        folder = "train" if split == "val" else split
        folders = [root / folder / sub for sub in ("A", "B", "label")]
        self._require(root, split, root / folder, *folders)
        files = match_folders(self.TITLE, root, *folders)
        if split == "test":
            return files
        return [f for i, f in enumerate(files) if (i % VAL_EVERY == 0) == (split == "val")]
