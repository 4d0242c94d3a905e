"""The reference optimiser, schedule and loss.

AdamW with weight decay on every weight except normalisation layers, positional embeddings and
relative-position tables (mmseg's ``paramwise_cfg`` in ChangeCLIP's configs: decay multiplier 0
for ``norm``, ``absolute_pos_embed`` and ``relative_position_bias_table``); a linear warm-up from
``lr * 1e-6`` then poly decay (power 1) to 0; softmax cross-entropy that ignores 255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.data.augment import IGNORE

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_NO_DECAY_NAMES = ("positional_embedding", "pos_embed", "bias_table", "class_embedding")
WARMUP_START = 1e-6


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW groups: decayed weights, and norms / positional embeddings without decay."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORMS):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    for name, param in model.named_parameters():
        if any(key in name for key in _NO_DECAY_NAMES):
            no_decay.add(id(param))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


def lr_factor(iteration: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at ``iteration`` (0-based): warm-up, then poly to 0."""
    if warmup and iteration < warmup:
        return WARMUP_START + (1.0 - WARMUP_START) * iteration / warmup
    span = max(total - warmup, 1)
    return max(0.0, 1.0 - (iteration - warmup) / span)


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], total: int, warmup: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`parameter_groups` and its warm-up + poly schedule (stepped once per iteration)."""
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=betas)
    warmup = min(warmup, max(total - 1, 0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, total, warmup))
    return optimizer, scheduler


def change_loss(logits: Tensor, mask: Tensor, kind: str = "ce") -> Tensor:
    """Cross-entropy over (B, 2, H, W) logits, plus a soft Dice on the change class for ``ce+dice``."""
    logits = logits.float()
    loss = F.cross_entropy(logits, mask, ignore_index=IGNORE)
    if kind == "ce+dice":
        valid = (mask != IGNORE).float()
        prob = logits.softmax(dim=1)[:, 1] * valid
        target = (mask == 1).float() * valid
        dice = 1.0 - (2.0 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)
        loss = loss + dice
    return loss
