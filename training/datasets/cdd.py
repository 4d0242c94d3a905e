"""CDD (Lebedev et al. 2018), the "Real" season-varying set: 16,000 pairs of 256² crops, 0.03-1 m."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from training.datasets.base import ChangeDataset, PairFiles, match_folders


class CDD(ChangeDataset):
    """CDD's ``Real/subset`` with its 10,000 / 3,000 / 3,000 split; labels in ``OUT``.

    Layout (``<root>`` may be ``ChangeDetectionDataset``, its ``Real`` folder or ``Real/subset``)::

        <root>/Real/subset/train/A/00000.jpg     before
        <root>/Real/subset/train/B/00000.jpg     after
        <root>/Real/subset/train/OUT/00000.jpg   change in white
        <root>/Real/subset/val/...  .../test/...  the same three folders

    The labels are JPEGs, so compression leaves grey values near 0 and 255: a pixel is change
    when its label value is above 127. Names are relative to ``subset``, e.g. ``train/A/00000.jpg``,
    whichever of the three roots is given.
    """

    TITLE: ClassVar[str] = "CDD"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")
    LABEL_THRESHOLD: ClassVar[int] = 127

    def layout(self, split: str) -> list[str]:
        """A / B / OUT per split under Real/subset."""
        return [f"Real/subset/{split}/A/*.jpg", f"Real/subset/{split}/B/*.jpg", f"Real/subset/{split}/OUT/*.jpg"]

    @staticmethod
    def subset_folder(root: Path) -> Path:
        """The ``subset`` folder for any of the accepted roots (``root/Real/subset`` when none exists)."""
        for candidate in (root / "Real" / "subset", root / "subset", root):
            if all((candidate / split).is_dir() for split in ("train", "val", "test")):
                return candidate
        return root / "Real" / "subset"

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        subset = self.subset_folder(root)
        folders = [subset / split / sub for sub in ("A", "B", "OUT")]
        self._require(root, split, subset, subset / split, *folders)
        return match_folders(self.TITLE, subset, *folders)
