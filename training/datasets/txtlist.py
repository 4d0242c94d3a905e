"""A dataset given as text lists of file triples, one list per split (the mmseg TXT layout of ChangeCLIP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from backend.errors import InputError
from training.datasets.base import ChangeDataset, PairFiles, first_few, layout_error


class TxtListDataset(ChangeDataset):
    """Samples listed in ``<root>/<split>.txt``.

    Each line holds three whitespace-separated paths, ``before after label``, relative to
    ``<root>`` or absolute; blank lines and lines starting with ``#`` are skipped. Any split
    name is accepted. Names are the before file relative to ``<root>``; for files outside
    ``<root>`` they are relative to the folder above the before files' common folder (e.g.
    ``A/test_1.png``), so they never hold an absolute path.
    """

    TITLE: ClassVar[str] = "The txt-list dataset"
    SPLITS: ClassVar[tuple[str, ...] | None] = None

    def layout(self, split: str) -> list[str]:
        """One list file per split."""
        return [f"{split}.txt"]

    def _find_files(self, root: Path, split: str) -> list[PairFiles]:
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise layout_error(
                self.TITLE, root, self.layout(split), f"{listing} is missing (each line: before after label)"
            )
        triples: list[tuple[Path, Path, Path]] = []
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) != 3:
                raise InputError(
                    f"{listing} line {number} has {len(fields)} fields ({text!r}); "
                    "write three paths per line: before after label."
                )
            before, after, label = (Path(f) if Path(f).is_absolute() else root / f for f in fields)
            triples.append((before, after, label))
        missing = [str(p) for triple in triples for p in triple if not p.is_file()]
        if missing:
            raise InputError(
                f"{listing} lists files that do not exist: {first_few(missing)}. Fix the list or the data root."
            )
        outside = [t[0] for t in triples if not t[0].is_relative_to(root)]
        anchor = Path(os.path.commonpath([p.parent for p in outside])).parent if outside else root
        return [
            PairFiles(b, a, lab, (b.relative_to(root) if b.is_relative_to(root) else b.relative_to(anchor)).as_posix())
            for b, a, lab in triples
        ]
