"""Change-detection scores from one global confusion matrix.

As in ChangeCLIP's metric script (dyzy41/ChangeCLIP ``tools/metric.py``: ``dir_metric`` sums
``cal_confusion`` over the test images, ``CM2Metric`` reads the scores), the pixels of a whole
split are counted into a single 2 x 2 confusion matrix (rows = ground truth, columns =
prediction) and the scores are read off it for the change class:

- precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``,
- F1 ``2 TP / (2 TP + FP + FN)`` (the harmonic mean of the two), IoU ``TP / (TP + FP + FN)``,
- OA ``(TP + TN) / N``.

ChangeCLIP adds 1e-4 to every cell to dodge a division by zero; here the counts stay exact and
a ratio whose denominator is zero -- there were no pixels it could be judged on -- is 1.0 when
the matrix holds no error at all (``FP == FN == 0``) and 0.0 otherwise. So an empty prediction
on an empty target scores 1.0 everywhere, an empty prediction on a target with change scores
precision, recall, F1 and IoU 0.0, and a matrix with no counted pixel (all ignored) scores 1.0.
On real data the two conventions differ by far less than the printed precision.

Target pixels of value 255 are ignored (padding); any other target value but 0 and 1 is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from backend.errors import InputError

IGNORE_INDEX = 255
METRIC_NAMES: tuple[str, ...] = ("oa", "iou", "f1", "precision", "recall")


def _ratio(numerator: int, denominator: int, error_free: bool) -> float:
    """``numerator / denominator``, or the convention of the module docstring when the denominator is 0."""
    if denominator == 0:
        return 1.0 if error_free else 0.0
    return numerator / denominator


def _counts_numpy(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    keep = target != IGNORE_INDEX
    p = pred[keep].astype(np.int64, copy=False)
    t = target[keep].astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise InputError(f"predictions hold values {sorted(np.unique(p).tolist())[:6]}; expected only 0 and 1.")
    if t.size and (t.min() < 0 or t.max() > 1):
        raise InputError(
            f"targets hold values {sorted(np.unique(t).tolist())[:6]}; expected 0, 1 and {IGNORE_INDEX} (ignore)."
        )
    return np.bincount(2 * t + p, minlength=4).reshape(2, 2)


def _counts_torch(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    target = target.to(pred.device)
    keep = target != IGNORE_INDEX
    p = pred[keep].long()
    t = target[keep].long()
    if p.numel() and bool((p.min() < 0) | (p.max() > 1)):
        raise InputError(f"predictions hold values {torch.unique(p)[:6].tolist()}; expected only 0 and 1.")
    if t.numel() and bool((t.min() < 0) | (t.max() > 1)):
        raise InputError(
            f"targets hold values {torch.unique(t)[:6].tolist()}; expected 0, 1 and {IGNORE_INDEX} (ignore)."
        )
    counts = torch.bincount(2 * t + p, minlength=4).cpu().numpy()
    return counts.astype(np.int64).reshape(2, 2)


class ConfusionMatrix:
    """A 2 x 2 int64 confusion matrix summed over many masks: ``matrix[truth, prediction]``."""

    def __init__(self, matrix: np.ndarray | None = None) -> None:
        self.matrix = np.zeros((2, 2), dtype=np.int64) if matrix is None else np.asarray(matrix, dtype=np.int64).copy()
        if self.matrix.shape != (2, 2):
            raise InputError(f"a confusion matrix is 2 x 2, got shape {self.matrix.shape}.")

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> ConfusionMatrix:
        """Count one batch: ``pred`` 0/1 (or bool), ``target`` 0/1 with 255 ignored, same shape.

        Tensors are counted on their own device; numpy arrays with numpy. Returns ``self``.

        Raises:
            InputError: Shapes differ or a value is outside {0, 1} (and 255 for the target).
        """
        if tuple(pred.shape) != tuple(target.shape):
            raise InputError(
                f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}; "
                "score masks of the same size."
            )
        if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
            p = pred if isinstance(pred, torch.Tensor) else torch.from_numpy(np.asarray(pred))
            t = target if isinstance(target, torch.Tensor) else torch.from_numpy(np.asarray(target))
            counts = _counts_torch(p.detach(), t.detach())
        else:
            counts = _counts_numpy(np.asarray(pred), np.asarray(target))
        self.matrix += counts
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts to this matrix; returns ``self``."""
        self.matrix += other.matrix
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrix over every torch.distributed rank (in place; nothing when not initialised).

        Every rank must call it. Under NCCL the counts travel on the current CUDA device.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        device = torch.device("cpu")
        if torch.distributed.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        counts = torch.from_numpy(self.matrix.copy()).to(device)
        torch.distributed.all_reduce(counts, op=torch.distributed.ReduceOp.SUM)
        self.matrix = counts.cpu().numpy().astype(np.int64)
        return self

    @property
    def tp(self) -> int:  # noqa: D102
        return int(self.matrix[1, 1])

    @property
    def fp(self) -> int:  # noqa: D102
        return int(self.matrix[0, 1])

    @property
    def fn(self) -> int:  # noqa: D102
        return int(self.matrix[1, 0])

    @property
    def tn(self) -> int:  # noqa: D102
        return int(self.matrix[0, 0])

    @property
    def total(self) -> int:
        """Pixels counted (ignored ones excluded)."""
        return int(self.matrix.sum())

    def as_dict(self) -> dict[str, Any]:
        """Scores of the change class in [0, 1] and the four counts.

        Keys: ``oa``, ``iou``, ``f1``, ``precision``, ``recall`` (floats) and ``tp``, ``fp``,
        ``fn``, ``tn`` (ints). Zero denominators follow the module docstring's convention.
        """
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        clean = fp == 0 and fn == 0
        return {
            "oa": _ratio(tp + tn, self.total, clean),
            "iou": _ratio(tp, tp + fp + fn, clean),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn, clean),
            "precision": _ratio(tp, tp + fp, clean),
            "recall": _ratio(tp, tp + fn, clean),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
        }

    def __repr__(self) -> str:
        return f"ConfusionMatrix(tp={self.tp}, fp={self.fp}, fn={self.fn}, tn={self.tn})"
