"""Test-time augmentation: the change logit averaged over flipped and rotated copies of each tile pair.

Change between two dates does not depend on which way is north, so a change model should answer
the same for a pair and for the pair turned or mirrored; averaging its answers over those copies
removes part of its orientation-dependent error. Measured with the shipped model on the held-out
validation images (sliding protocol, F1 at the card's threshold; docs/training.md): LEVIR-CD
82.0 -> 82.9 (flips) -> 84.3 (d4), DSIFN 74.9 -> 76.8 -> 75.2, WHU-CD 38.0 -> 38.8 -> 38.8,
AirChange 49.8 -> 51.3 -> 52.1. The cost is one forward pass per copy: 4x for ``flips``, 8x for ``d4``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from backend.params import TTA_MODES

# "none": the tile pair as it is; "flips": + mirrored left-right, top-bottom and both (4 passes);
# "d4": all eight rotations and mirror images of a square tile (8 passes; flips for other shapes).
PASSES = {"none": 1, "flips": 4, "d4": 8}

Transform = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]


def _flip(dims: tuple[int, ...]) -> Transform:
    def apply(x: Tensor) -> Tensor:
        return x.flip(dims) if dims else x

    return apply, apply  # a flip undoes itself


def _turn(k: int, mirror: bool) -> Transform:
    def forward(x: Tensor) -> Tensor:
        x = x.flip(-1) if mirror else x
        return torch.rot90(x, k, (-2, -1))

    def inverse(x: Tensor) -> Tensor:
        x = torch.rot90(x, -k, (-2, -1))
        return x.flip(-1) if mirror else x

    return forward, inverse


def transforms(mode: str, square: bool) -> list[Transform]:
    """The (forward, inverse) pairs of ``mode`` over the last two dimensions.

    Raises:
        ValueError: ``mode`` is not one of :data:`TTA_MODES`.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"tta={mode!r} is not one of {', '.join(TTA_MODES)}.")
    if mode == "none":
        return [_flip(())]
    if mode == "d4" and square:
        return [_turn(k, mirror) for mirror in (False, True) for k in range(4)]
    return [_flip(dims) for dims in ((), (-1,), (-2,), (-2, -1))]


def averaged_logit(predict: Callable[[Tensor, Tensor], Tensor], a: Tensor, b: Tensor, mode: str) -> Tensor:
    """Mean of ``predict`` over the transformed copies of ``(a, b)``, each mapped back: ``(B, H, W)``.

    Args:
        predict: Change logit ``(B, H, W)`` of images ``(B, C, H, W)``.
        a: Earlier images.
        b: Later images.
        mode: One of :data:`TTA_MODES`.
    """
    square = a.shape[-1] == a.shape[-2]
    logits = [inverse(predict(forward(a), forward(b)).float()) for forward, inverse in transforms(mode, square)]
    return logits[0] if len(logits) == 1 else torch.stack(logits).mean(0)
