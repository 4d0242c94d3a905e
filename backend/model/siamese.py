"""A plain siamese change network on an ImageNet encoder: the baseline ChangeCLIP must beat.

Both dates go through one EfficientNet-Lite; per level, ``cat(a, b, |a - b|)`` is squeezed by a
1x1 convolution; a feature pyramid merges the levels top-down, and a small head turns the
stride-4 map into two logits (no change, change). No text side: prompts are accepted and ignored,
so the model plugs into the same pipeline, model file and training loop as ChangeCLIP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.model.changeclip import NamesPerDate, check_pair
from backend.model.config import ModelConfig
from backend.model.efficientnet import EfficientNetLite
from backend.model.fusion import FPN

_logger = logging.getLogger(__name__)


class SiameseChange(nn.Module):
    """``model(image_a, image_b) -> logits (B, 2, H, W)``; ``config.head.fusion_channels`` wide."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.head.fusion_channels
        self.encoder = EfficientNetLite(config.image_encoder)
        channels = self.encoder.out_channels
        self.squeeze = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(3 * c, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True))
                for c in channels
            ]
        )
        self.fpn = FPN([width] * len(channels), width)
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.Dropout(config.head.dropout),
            nn.Conv2d(width, 2, 1),
        )
        self.default_prompts: list[str] = list(config.default_prompts)
        self.prompt_source = "default"
        self.weights_source = "random"
        self._warned_prompts = False

    def forward(
        self,
        image_a: Tensor,
        image_b: Tensor,
        prompts: Sequence[str] | None = None,
        names: NamesPerDate | None = None,
    ) -> Tensor:
        """Change logits (B, 2, H, W) for normalised tiles (B, 3, H, W); prompts are ignored."""
        check_pair(image_a, image_b)
        if prompts and any(p.strip() for p in prompts) and not self._warned_prompts:
            _logger.warning("%s has no text side: ignoring the class names %s", self.config.name, list(prompts))
            self._warned_prompts = True
        b = image_a.shape[0]
        levels = self.encoder(torch.cat([image_a, image_b]))
        fused = [
            sq(torch.cat([f[:b], f[b:], (f[:b] - f[b:]).abs()], dim=1))
            for sq, f in zip(self.squeeze, levels, strict=True)
        ]
        logits = self.head(self.fpn(fused)[0])
        return F.interpolate(logits, size=image_a.shape[-2:], mode="bilinear", align_corners=False)
