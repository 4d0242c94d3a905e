"""``python -m training.prepare``: cut LEVIR-CD / LEVIR-CD+ 1024² images into ChangeCLIP's 256² tiles.

Each split's A / B / label images are cut with :func:`training.data.tiles.cut` (256 at stride 192,
reflect padding: 36 tiles per 1024² image) into the same layout under ``--out``::

    <out>/<split>/A/<stem>_<row>_<col>.png   (B and label alike; labels stay 0/255)
    <out>/index.json                         sources, tile positions and the protocol

so ``get_dataset("levir-cd", out, split)`` reads the tiles, and evaluation can merge tile
predictions back with :func:`training.data.tiles.merge_and`. LEVIR-CD+ is written with its three
splits (``val`` = the held-out whole training images of :class:`~training.datasets.LEVIRCDPlus`),
so its tiles are read with ``levir-cd`` too. Running it again changes nothing: a tile whose
file already holds the same pixels is not rewritten, and neither is an unchanged index. Tiles
left by an earlier run with other parameters are not deleted; the index lists the current ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.errors import ClipCDError, InputError
from backend.outputs.files import atomic_output, ensure_writable_folder
from training.data import tiles
from training.data.imageio import read_image, read_label
from training.datasets import DATASETS, PairFiles

_log = logging.getLogger("training.data.prepare")

TILED_DATASETS = ("levir-cd", "levir-cd-plus")
INDEX_NAME = "index.json"
INDEX_FORMAT = "clipcd-tiles/1"
PNG_LEVEL = 3  # zlib level: as small as 6 on these tiles, twice as fast


@dataclass(frozen=True)
class PrepareResult:
    """What a run did: tiles written and skipped (already up to date), and the index file."""

    written: int
    skipped: int
    images: int
    index: Path


def _pil_image(array: np.ndarray) -> Image.Image:
    """``(bands, h, w)`` or ``(h, w)`` uint8 (1-4 bands) or one-band uint16 as a PIL image for PNG."""
    data = array[0] if array.ndim == 3 and array.shape[0] == 1 else array
    if data.ndim == 3:
        if data.dtype != np.uint8 or data.shape[0] not in (2, 3, 4):
            raise InputError(f"Cannot write a {data.shape[0]}-band {data.dtype} tile as PNG; use 8-bit RGB images.")
        data = data.transpose(1, 2, 0)
    elif data.dtype not in (np.uint8, np.uint16):
        raise InputError(f"Cannot write a {data.dtype} tile as PNG; use 8- or 16-bit images.")
    return Image.fromarray(np.ascontiguousarray(data))


def _holds(path: Path, image: Image.Image) -> bool:
    """True when ``path`` is a PNG with exactly the pixels (and mode) of ``image``."""
    try:
        with Image.open(path) as existing:
            return bool(existing.mode == image.mode and np.array_equal(np.asarray(existing), np.asarray(image)))
    except (OSError, ValueError):
        return False


def write_tile(path: Path, array: np.ndarray) -> bool:
    """Write ``array`` as a PNG at ``path`` atomically unless the file already holds these pixels; True when written."""
    image = _pil_image(array)
    if path.is_file() and _holds(path, image):
        return False
    with atomic_output(path) as partial:
        image.save(partial, format="PNG", compress_level=PNG_LEVEL)
    return True


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds it; True when written."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    with atomic_output(path) as partial:
        partial.write_bytes(data)
    return True


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _cut_pair(
    files: PairFiles, split: str, root: Path, out: Path, tile: int, stride: int
) -> tuple[dict[str, Any], int, int]:
    """Cut one source triple; returns its index entry and the written / skipped tile counts."""
    bands = {"A": read_image(files.before), "B": read_image(files.after)}
    label = read_label(files.label)
    bands["label"] = np.where(label > 0, 255, 0).astype(np.uint8)
    shape = label.shape
    if bands["A"].shape[1:] != shape or bands["B"].shape[1:] != shape:
        raise InputError(
            f"{files.name}: before {bands['A'].shape[1:]}, after {bands['B'].shape[1:]} and label {shape} "
            "differ in size; the three files must cover the same pixels."
        )
    stem = files.before.stem
    written = skipped = 0
    positions: list[tiles.Cut] = []
    for folder, array in bands.items():
        for piece in tiles.cut(array, tile, stride):
            target = out / split / folder / f"{stem}_{piece.row}_{piece.col}.png"
            if write_tile(target, piece.array):
                written += 1
            else:
                skipped += 1
            if folder == "A":
                positions.append(piece)
    (top, bottom), (left, right) = tiles.padding(shape[0], tile, stride), tiles.padding(shape[1], tile, stride)
    rows, cols = tiles.tile_starts(shape[0], tile, stride), tiles.tile_starts(shape[1], tile, stride)
    entry = {
        "split": split,
        "stem": stem,
        "source": {"A": files.name, "B": _relative(files.after, root), "label": _relative(files.label, root)},
        "height": shape[0],
        "width": shape[1],
        "pad": [top, bottom, left, right],
        "tiles": [
            {
                "row": p.row,
                "col": p.col,
                "y": rows[p.row] - top,
                "x": cols[p.col] - left,
                "file": f"{stem}_{p.row}_{p.col}.png",
            }
            for p in positions
        ],
    }
    return entry, written, skipped


def prepare(
    dataset: str,
    data_root: str | Path,
    out: str | Path,
    *,
    splits: Sequence[str] | None = None,
    tile: int = tiles.TILE,
    stride: int = tiles.STRIDE,
) -> PrepareResult:
    """Cut every split of ``dataset`` under ``data_root`` into tiles under ``out`` and write the index.

    Raises:
        InputError: Unknown dataset or split, bad layout, or ``out`` is the data root.
    """
    if dataset not in TILED_DATASETS:
        raise InputError(f"prepare cuts {' and '.join(TILED_DATASETS)} only, not {dataset!r}.")
    cls = DATASETS[dataset]
    root, target = Path(data_root), Path(out)
    if target.resolve() == root.resolve():
        raise InputError(f"--out {target} is the data root; choose another folder for the tiles.")
    chosen = list(splits) if splits else list(cls.SPLITS or ())
    sources = {split: cls(root, split).files for split in chosen}  # validates every split before writing
    for split in chosen:
        for folder in ("A", "B", "label"):
            ensure_writable_folder(target / split / folder)
    entries: list[dict[str, Any]] = []
    written = skipped = 0
    total = sum(len(files) for files in sources.values())
    for split, files in sources.items():
        _log.info("cutting %s split %s: %d images", dataset, split, len(files))
        for files_one in files:
            entry, new, same = _cut_pair(files_one, split, root, target, tile, stride)
            entries.append(entry)
            written, skipped = written + new, skipped + same
            if len(entries) % 20 == 0 or len(entries) == total:
                _log.info("%d / %d images cut (%d tiles written, %d unchanged)", len(entries), total, written, skipped)
    index = {
        "format": INDEX_FORMAT,
        "dataset": dataset,
        "protocol": {
            "name": "changeclip-levir",
            "tile": tile,
            "stride": stride,
            "padding": "reflect, ((size - tile) // stride + 1) * stride + tile, pad // 2 before",
            "merge": "mean of 0/1 tiles cast to uint8 (AND), training.data.tiles.merge_and",
            "reference": "dyzy41/ChangeCLIP tools/merge_data.py",
        },
        "layout": "<split>/{A,B,label}/<file>; labels 0/255",
        "splits": chosen,
        "images": entries,
    }
    index_path = target / INDEX_NAME
    if write_if_changed(index_path, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode("utf-8")):
        _log.info("wrote %s", index_path)
    return PrepareResult(written=written, skipped=skipped, images=len(entries), index=index_path)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.prepare``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare", description="Cut LEVIR-CD / LEVIR-CD+ images into ChangeCLIP's 256² tiles."
    )
    parser.add_argument("--dataset", required=True, choices=TILED_DATASETS)
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset folder (holds train/, test/, ...)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tiles and index.json")
    parser.add_argument("--splits", nargs="+", help="splits to cut (default: all of the dataset's)")
    parser.add_argument("--tile", type=int, default=tiles.TILE, help="tile side (reference: 256)")
    parser.add_argument("--stride", type=int, default=tiles.STRIDE, help="tile stride (reference: 192)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 0 on success, 2 on bad input (the message says what to do)."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = prepare(args.dataset, args.data_root, args.out, splits=args.splits, tile=args.tile, stride=args.stride)
    except ClipCDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.images} images: {result.written} tiles written, {result.skipped} unchanged; index {result.index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
