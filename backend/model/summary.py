"""Size and cost of a model: parameters and FLOPs of one forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_flops(fn: Any, *args: Any) -> int:
    """FLOPs of ``fn(*args)`` as torch's FlopCounterMode counts them (2 per multiply-add)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def model_summary(model: nn.Module, size: int = 256) -> dict[str, Any]:
    """Parameters and GFLOPs of one tile-pair forward at ``size`` x ``size`` (batch 1, CPU).

    Returns:
        ``params`` (total), ``params_by_part`` (encoder, text encoder, miner, rest), ``gflops``
        (the whole forward, prompt mining included), ``encoder_gflops`` (two image-encoder passes).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    encoder = getattr(model, "encoder", None)
    text = getattr(model, "text_encoder", None)
    miner = getattr(model, "miner", None)
    parts = {"encoder": count_params(encoder), "text_encoder": count_params(text), "miner": count_params(miner)}
    total = count_params(model)
    parts["rest"] = total - sum(parts.values())
    cache = getattr(model, "_text_cache", None)
    if isinstance(cache, dict):
        cache.clear()  # count the text tower too
    flops = count_flops(model, image, image.clone())
    encoder_flops = count_flops(encoder, torch.cat([image, image])) if encoder is not None else 0
    model.train(was_training)
    return {
        "params": total,
        "params_by_part": parts,
        "gflops": flops / 1e9,
        "encoder_gflops": encoder_flops / 1e9,
        "size": size,
    }
