"""WHU-CD (Ji et al., TGRS 2019): one 32,507 x 15,354 aerial pair of Christchurch, 0.3 m, cut into tiles."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from backend.errors import InputError
from training.datasets.base import IMAGE_SUFFIXES, ChangeDataset, PairFiles, first_few, image_files, match_folders


class WHUCD(ChangeDataset):
    """WHU-CD as the common cut-tile distribution (WHU-CD-256 of BIT / ChangeFormer, 7,434 tiles).

    Layout::

        <root>/A/whucd_00001.png        before (2012)
        <root>/B/whucd_00001.png        after (2016)
        <root>/label/whucd_00001.png    0 = no change, 255 = change
        <root>/list/train.txt           one file name per line (val.txt, test.txt alike)

    A list line may hold more columns (only the first is read) and may name the file with or
    without its extension. Distributions cut into split folders instead,
    ``<root>/<split>/{A,B,label}/*.png``, are read too when ``list/<split>.txt`` is absent.
    Names are ``A/<file>`` (list layout) or ``<split>/A/<file>`` (split folders).
    """

    TITLE: ClassVar[str] = "WHU-CD"
    SPLITS: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")

    def layout(self, split: str) -> list[str]:
        """The list layout of BIT / ChangeFormer."""
        return ["A/*.png", "B/*.png", "label/*.png", f"list/{split}.txt"]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        listing = root / "list" / f"{split}.txt"
        if not listing.exists() and (root / split / "A").is_dir():
            folders = [root / split / sub for sub in ("A", "B", "label")]
            self._require(root, split, *folders)
            return match_folders(self.TITLE, root, *folders)
        folders = [root / sub for sub in ("A", "B", "label")]
        self._require(root, split, *folders, listing)
        maps = [image_files(folder) for folder in folders]
        files: list[PairFiles] = []
        missing: list[str] = []
        for line in listing.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            entry = Path(fields[0])
            stem = entry.stem if entry.suffix.lower() in IMAGE_SUFFIXES else entry.name
            found = [m.get(stem) for m in maps]
            if any(p is None for p in found):
                missing.append(fields[0])
                continue
            before, after, label = (p for p in found if p is not None)
            files.append(PairFiles(before, after, label, before.relative_to(root).as_posix()))
        if missing:
            raise InputError(
                f"WHU-CD: {listing} names files that are not in all of A/, B/ and label/ under {root}: "
                f"{first_few(missing)}. "
                "Check that the list belongs to this copy of the dataset."
            )
        return files
