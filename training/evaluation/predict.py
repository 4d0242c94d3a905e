"""Whole-image change masks for evaluation, under three protocols.

An image pair (two ``(3, H, W)`` float32 images in ``[0, 1]``) becomes a *job*: the patch pairs
the model must see, all of one size, and a function that turns their change logits back into a
mask for any threshold. :func:`run_jobs` batches the patches of consecutive jobs through a
:class:`backend.inference.predict.Predictor`, so small images share a forward pass.

- ``tiles``: the whole image at once, reflect-padded on the bottom and right to a multiple of
  32 and cropped back.
- ``changeclip-merge``: ChangeCLIP's LEVIR protocol: 256 tiles at stride 192 (reflect padded,
  :func:`training.data.tiles.cut`), each thresholded to 0/1, merged with the reference rule
  (:func:`training.data.tiles.merge_and`: change only where every covering tile says change).
- ``sliding``: exactly what ``backend detect`` does: :func:`backend.inference.tiling.tile_grid` with the
  card's tile size and overlap, tiles past the edge padded with zeros (invalid), logits blended
  by :class:`backend.outputs.stitch.Stitcher`; the change mask is ``probability >= threshold``, as
  :func:`backend.outputs.stitch.to_mask` draws it.

Every protocol compares the probability with ``>=`` like the engine does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import expit

from backend.inference.predict import Predictor
from backend.inference.tiling import Tile, tile_grid
from backend.outputs.stitch import Stitcher
from training.data import tiles

Protocol = Literal["tiles", "changeclip-merge", "sliding"]
PROTOCOLS: tuple[str, ...] = ("tiles", "changeclip-merge", "sliding")
MERGE_TILE = 256  # ChangeCLIP's LEVIR tiles: 256 px ...
MERGE_STRIDE = 192  # ... at stride 192 (overlap 64)
MULTIPLE = 32  # whole images are padded to a multiple of this

#: Turns a job's logits (one per patch, in order) into a mask builder: threshold -> uint8 0/1 (H, W).
Finisher = Callable[[list[np.ndarray]], Callable[[float], np.ndarray]]


@dataclass
class Job:
    """The patch pairs of one image pair, and how their logits become its mask."""

    patches_a: list[np.ndarray]
    patches_b: list[np.ndarray]
    finish: Finisher
    key: object = None  # the caller's tag (e.g. the sample), handed back by run_jobs
    logits: list[np.ndarray] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True once every patch has its logit."""
        return len(self.logits) == len(self.patches_a)


def probability(logit: np.ndarray) -> np.ndarray:
    """Change probability, float32, as the stitcher computes it."""
    return np.asarray(expit(logit), dtype=np.float32)


def _pad_to_multiple(image: np.ndarray, multiple: int = MULTIPLE) -> np.ndarray:
    height, width = image.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")


def whole_image_job(image_a: np.ndarray, image_b: np.ndarray, key: object = None) -> Job:
    """The ``tiles`` protocol: the image pair in one piece."""
    height, width = image_a.shape[-2:]

    def finish(logits: list[np.ndarray]) -> Callable[[float], np.ndarray]:
        prob = probability(logits[0][:height, :width])
        return lambda threshold: (prob >= threshold).astype(np.uint8)

    return Job([_pad_to_multiple(image_a)], [_pad_to_multiple(image_b)], finish, key)


def merge_job(image_a: np.ndarray, image_b: np.ndarray, key: object = None) -> Job:
    """The ``changeclip-merge`` protocol: 256 tiles at stride 192, 0/1 each, AND-merged."""
    shape = (int(image_a.shape[-2]), int(image_a.shape[-1]))
    cuts_a = tiles.cut(image_a, tile=MERGE_TILE, stride=MERGE_STRIDE)
    cuts_b = tiles.cut(image_b, tile=MERGE_TILE, stride=MERGE_STRIDE)

    def finish(logits: list[np.ndarray]) -> Callable[[float], np.ndarray]:
        probs = [probability(logit) for logit in logits]

        def mask(threshold: float) -> np.ndarray:
            binary = [
                tiles.Cut(cut.row, cut.col, (prob >= threshold).astype(np.uint8))
                for cut, prob in zip(cuts_a, probs, strict=True)
            ]
            merged = tiles.merge_and(binary, shape, tile=MERGE_TILE, stride=MERGE_STRIDE)
            return (np.asarray(merged) > 0).astype(np.uint8)

        return mask

    return Job([c.array for c in cuts_a], [c.array for c in cuts_b], finish, key)


def _window(image: np.ndarray, tile: Tile) -> np.ndarray:
    """The tile's pixels of ``image``, zero past the edge (as the engine's boundless read gives them)."""
    out = np.zeros((image.shape[0], tile.size, tile.size), dtype=np.float32)
    rows = min(tile.size, image.shape[1] - tile.row_off)
    cols = min(tile.size, image.shape[2] - tile.col_off)
    out[:, :rows, :cols] = image[:, tile.row_off : tile.row_off + rows, tile.col_off : tile.col_off + cols]
    return out


def sliding_job(image_a: np.ndarray, image_b: np.ndarray, tile_size: int, overlap: int, key: object = None) -> Job:
    """The ``sliding`` protocol: the engine's tile grid and logit blending."""
    height, width = (int(s) for s in image_a.shape[-2:])
    grid = tile_grid(height, width, tile_size, overlap)

    def finish(logits: list[np.ndarray]) -> Callable[[float], np.ndarray]:
        prob = np.zeros((height, width), dtype=np.float32)

        def sink(row_start: int, rows: np.ndarray, valid: np.ndarray) -> None:
            prob[row_start : row_start + rows.shape[0]] = rows

        stitcher = Stitcher(height, width, tile_size, overlap, sink)
        for tile, logit in zip(grid, logits, strict=True):
            valid = np.zeros((tile_size, tile_size), dtype=bool)
            valid[: height - tile.row_off, : width - tile.col_off] = True
            stitcher.add(tile, logit, valid)
        stitcher.finish()
        return lambda threshold: (prob >= threshold).astype(np.uint8)

    return Job([_window(image_a, t) for t in grid], [_window(image_b, t) for t in grid], finish, key)


def make_job(
    protocol: str, image_a: np.ndarray, image_b: np.ndarray, *, tile_size: int, overlap: int, key: object = None
) -> Job:
    """The job of ``protocol`` for one image pair (see the module docstring)."""
    if protocol == "tiles":
        return whole_image_job(image_a, image_b, key)
    if protocol == "changeclip-merge":
        return merge_job(image_a, image_b, key)
    if protocol == "sliding":
        return sliding_job(image_a, image_b, tile_size, overlap, key)
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def run_jobs(
    predictor: Predictor, jobs: Iterable[Job], batch_size: int
) -> Iterator[tuple[Job, Callable[[float], np.ndarray]]]:
    """Predict the jobs' patches in batches; yield each job, in order, with its mask builder.

    A batch holds patches of one size, from one or several consecutive jobs.
    """
    pending: deque[Job] = deque()
    owners: list[Job] = []
    batch_a: list[np.ndarray] = []
    batch_b: list[np.ndarray] = []

    def flush() -> None:
        logits = predictor.infer(np.stack(batch_a), np.stack(batch_b))
        for owner, logit in zip(owners, logits, strict=True):
            owner.logits.append(logit)
        owners.clear()
        batch_a.clear()
        batch_b.clear()

    for job in jobs:
        pending.append(job)
        for a, b in zip(job.patches_a, job.patches_b, strict=True):
            if batch_a and (len(batch_a) >= batch_size or a.shape != batch_a[0].shape):
                flush()
            batch_a.append(np.ascontiguousarray(a, dtype=np.float32))
            batch_b.append(np.ascontiguousarray(b, dtype=np.float32))
            owners.append(job)
        while pending and pending[0].done:
            yield _finish(pending.popleft())
    if batch_a:
        flush()
    while pending:
        yield _finish(pending.popleft())


def _finish(job: Job) -> tuple[Job, Callable[[float], np.ndarray]]:
    builder = job.finish(job.logits)
    job.patches_a, job.patches_b, job.logits = [], [], []  # free the memory early
    return job, builder
