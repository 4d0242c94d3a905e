"""Any A / B / label folder triple, e.g. the real samples in ../shared/data."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from training.datasets.base import ChangeDataset, PairFiles, layout_error, match_folders


class FolderDataset(ChangeDataset):
    """A generic before / after / label layout, files matched by name (the extension may differ).

    Layout, either of::

        <root>/A/*.png  <root>/B/*.png  <root>/label/*.png                    (split ignored)
        <root>/<split>/A/*.png  <root>/<split>/B/*.png  <root>/<split>/label/*.png

    The split folder is used when ``<root>/<split>/A`` exists. Any split name is accepted.
    Images may be PNG, JPEG, BMP, TIFF or WebP; labels are change where nonzero. Names are
    ``A/<file>`` or ``<split>/A/<file>``.
    """

    TITLE: ClassVar[str] = "The folder dataset"
    SPLITS: ClassVar[tuple[str, ...] | None] = None

    def layout(self, split: str) -> list[str]:
        """The split-less layout (the error also mentions the split one)."""
        return ["A/*.png", "B/*.png", "label/*.png"]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        base = root / split if (root / split / "A").is_dir() else root
        folders = [base / sub for sub in ("A", "B", "label")]
        for folder in folders:
            if not folder.is_dir():
                problem = f"{folder} is missing (nor is there a {root / split / 'A'} split folder)"
                raise layout_error(self.TITLE, root, self.layout(split), problem)
        return match_folders(self.TITLE, root, *folders)
