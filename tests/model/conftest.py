"""Tiny random-weight configs of both CLIP families, built through the real code path."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backend.model import create_model

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}
TINY_RN = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64, "patch_size": None},
    "text_cfg": TEXT,
}
TINY_VIT = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": TEXT,
}
TINY_MINER = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
}
TINY_HEAD = {"out_indices": [0, 1, 2, 3], "fusion_channels": 32, "dim": 32, "text_dim": 32, "depth": 2}
TINY_TEXT = {"decoder_width": 32, "decoder_layers": 1}


def tiny_overrides(family: str) -> dict[str, Any]:
    """Overrides that turn changeclip-small into a tiny model of ``family`` ("rn" or "vit")."""
    clip = TINY_RN if family == "rn" else TINY_VIT
    return {
        "clip": {"model": f"tiny-{family}", "cfg": clip},
        "miner": {"model": "tiny-miner", "cfg": TINY_MINER},
        "head": TINY_HEAD,
        "text": TINY_TEXT,
    }


def tiny_model(family: str, seed: int = 0, **extra: Any) -> Any:
    torch.manual_seed(seed)
    return create_model("changeclip-small", **tiny_overrides(family), **extra)


def pair(batch: int = 1, h: int = 256, w: int = 256, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, h, w, generator=g), torch.randn(batch, 3, h, w, generator=g)


@pytest.fixture(scope="module")
def small_model() -> Any:
    torch.manual_seed(0)
    return create_model("changeclip-small")
