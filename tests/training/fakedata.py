"""Tiny fake copies of the change-detection datasets, with their real folder and file names.

One generator per dataset, as torchgeo's tests/data/*/data.py: seeded RNG, small random RGB
images and 0/255 labels (a rectangle of change). Each returns a :class:`FakeTree` with the root
to hand to the dataset class and the number of samples per split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


@dataclass(frozen=True)
class FakeTree:
    root: Path
    counts: dict[str, int]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def rgb(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def label(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """0/255 label with one rectangle of change."""
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (int(v) for v in rng.integers(0, size // 2, 2))
    height, width = (int(v) for v in rng.integers(1, size // 2 + 1, 2))
    out[top : top + height, left : left + width] = 255
    return out


def write_triple(
    folders: tuple[Path, Path, Path],
    name: str,
    rng: np.random.Generator,
    size: int = SIZE,
    *,
    label_name: str | None = None,
    jpeg: bool = False,
) -> None:
    """Write before, after and label images called ``name`` (label: ``label_name``) into the three folders."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    before, after, lab = folders
    if jpeg:
        Image.fromarray(rgb(rng, size)).save(before / name, format="JPEG", quality=95)
        Image.fromarray(rgb(rng, size)).save(after / name, format="JPEG", quality=95)
        Image.fromarray(label(rng, size)).save(lab / (label_name or name), format="JPEG", quality=95)
        return
    Image.fromarray(rgb(rng, size)).save(before / name)
    Image.fromarray(rgb(rng, size)).save(after / name)
    Image.fromarray(label(rng, size)).save(lab / (label_name or name))


def make_levircd(root: Path, counts: dict[str, int] | None = None, size: int = SIZE) -> FakeTree:
    """LEVIR-CD: ``<root>/{train,val,test}/{A,B,label}/<split>_<n>.png``."""
    counts = counts or {"train": 3, "val": 2, "test": 2}
    rng = _rng(0)
    for split, count in counts.items():
        folders = (root / split / "A", root / split / "B", root / split / "label")
        for n in range(1, count + 1):
            write_triple(folders, f"{split}_{n}.png", rng, size)
    return FakeTree(root, counts)


def make_levircd_plus(root: Path, size: int = SIZE) -> FakeTree:
    """LEVIR-CD+: ``<root>/{train,test}/{A,B,label}/<split>_<n>.png``; 12 train -> val 2, train 10."""
    rng = _rng(1)
    for split, count in {"train": 12, "test": 2}.items():
        folders = (root / split / "A", root / split / "B", root / split / "label")
        for n in range(1, count + 1):
            write_triple(folders, f"{split}_{n}.png", rng, size)
    return FakeTree(root, {"train": 10, "val": 2, "test": 2})


def make_whucd(root: Path, size: int = SIZE) -> FakeTree:
    """WHU-CD-256: ``<root>/{A,B,label}/whucd_NNNNN.png`` and ``<root>/list/{train,val,test}.txt``."""
    rng = _rng(2)
    folders = (root / "A", root / "B", root / "label")
    names = [f"whucd_{n:05d}.png" for n in range(1, 11)]
    for name in names:
        write_triple(folders, name, rng, size)
    lists = {"train": names[:6], "val": names[6:8], "test": names[8:]}
    (root / "list").mkdir()
    for split, listed in lists.items():
        (root / "list" / f"{split}.txt").write_text("".join(f"{n}\n" for n in listed), encoding="utf-8")
    return FakeTree(root, {split: len(listed) for split, listed in lists.items()})


def make_cdd(root: Path, size: int = SIZE) -> FakeTree:
    """CDD: ``<root>/ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/NNNNN.jpg`` (JPEG labels).

    Returns the ``ChangeDetectionDataset`` folder as the root.
    """
    rng = _rng(3)
    base = root / "ChangeDetectionDataset"
    counts = {"train": 3, "val": 2, "test": 2}
    for split, count in counts.items():
        subset = base / "Real" / "subset" / split
        for n in range(count):
            write_triple((subset / "A", subset / "B", subset / "OUT"), f"{n:05d}.jpg", rng, size, jpeg=True)
    return FakeTree(base, counts)


def make_sysucd(root: Path, size: int = SIZE) -> FakeTree:
    """SYSU-CD: ``<root>/{train,val,test}/{time1,time2,label}/NNNNN.png`` (train 0..., val 12000..., test 16000...)."""
    rng = _rng(4)
    starts = {"train": (0, 3), "val": (12000, 2), "test": (16000, 2)}
    for split, (start, count) in starts.items():
        folders = (root / split / "time1", root / split / "time2", root / split / "label")
        for n in range(start, start + count):
            write_triple(folders, f"{n:05d}.png", rng, size)
    return FakeTree(root, {split: count for split, (_, count) in starts.items()})


def make_folder(root: Path, size: int = SIZE) -> FakeTree:
    """Generic ``<root>/{A,B,label}``; the before images are JPEG, the rest PNG (matched by stem)."""
    rng = _rng(5)
    folders = (root / "A", root / "B", root / "label")
    for n in range(1, 4):
        write_triple(folders, f"pair_{n}.png", rng, size)
        jpeg = root / "A" / f"pair_{n}.jpg"
        Image.open(root / "A" / f"pair_{n}.png").convert("RGB").save(jpeg, format="JPEG", quality=95)
        (root / "A" / f"pair_{n}.png").unlink()
    return FakeTree(root, {"train": 3, "val": 3, "test": 3})


def make_txtlist(root: Path, size: int = SIZE) -> FakeTree:
    """``<root>/{train,val,test}.txt`` over ``<root>/images/{A,B,label}``: relative paths, absolute paths,
    comments and blank lines, fields separated by two spaces as in ChangeCLIP's lists."""
    rng = _rng(6)
    folders = (root / "images" / "A", root / "images" / "B", root / "images" / "label")
    for n in range(1, 6):
        write_triple(folders, f"img_{n}.png", rng, size)

    def line(n: int, absolute: bool) -> str:
        paths = [(f / f"img_{n}.png") for f in folders]
        return "  ".join(str(p) if absolute else p.relative_to(root).as_posix() for p in paths)

    (root / "train.txt").write_text(f"# before after label\n{line(1, False)}\n\n{line(2, False)}\n{line(3, False)}\n")
    (root / "val.txt").write_text(f"{line(4, True)}\n")
    (root / "test.txt").write_text(f"{line(5, False)}\n")
    return FakeTree(root, {"train": 3, "val": 1, "test": 1})


def make_oscd(root: Path, size: int = SIZE) -> FakeTree:
    """OSCD release layout: ``<root>/<city>/imgs_{1,2}/*_B??.tif``, ``cm/cm.png``, ``{train,val,test}.txt``."""
    from tests.sentinel import write_oscd_city

    counts = {"train": 3, "val": 2, "test": 2}
    for split, count in counts.items():
        cities = [f"{split}city{n}" for n in range(count)]
        for city in cities:
            write_oscd_city(root, city, height=size, width=size)
        (root / f"{split}.txt").write_text(",".join(cities) + "\n", encoding="utf-8")
    return FakeTree(root, counts)


GENERATORS = {
    "levir-cd": make_levircd,
    "levir-cd-plus": make_levircd_plus,
    "whu-cd": make_whucd,
    "cdd": make_cdd,
    "sysu-cd": make_sysucd,
    "oscd": make_oscd,
    "folder": make_folder,
    "txt-list": make_txtlist,
}
