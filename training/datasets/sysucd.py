"""SYSU-CD (Shi et al., TGRS 2022): 20,000 pairs of 256² aerial images of Hong Kong, 0.5 m."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from training.datasets.base import ChangeDataset, PairFiles, match_folders


class SYSUCD(ChangeDataset):
    """SYSU-CD with its official 12,000 / 4,000 / 4,000 split.

    Layout::

        <root>/train/time1/00000.png   before
        <root>/train/time2/00000.png   after
        <root>/train/label/00000.png   0 = no change, 255 = change
        <root>/val/...  <root>/test/...   the same three folders

    Names are ``<split>/time1/<file>``.
    """

    TITLE: ClassVar[str] = "SYSU-CD"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")

    def layout(self, split: str) -> list[str]:
        """time1 / time2 / label per split."""
        return [f"{split}/time1/*.png", f"{split}/time2/*.png", f"{split}/label/*.png"]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        folders = [root / split / sub for sub in ("time1", "time2", "label")]
        self._require(root, split, root / split, *folders)
        return match_folders(self.TITLE, root, *folders)
