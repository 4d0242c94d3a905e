"""A plain siamese change network on an ImageNet encoder: the baseline ChangeCLIP must beat.

Both dates go through one EfficientNet-Lite; per level, ``cat(a, b, |a - b|)`` is squeezed by a
1x1 convolution; a feature pyramid merges the levels top-down, and a small head turns the
stride-4 map into two logits (no change, change). With ``head.output_stride`` 2, the stride-4 map
is first upsampled and refined with the fused stride-2 level (sharper outlines for a fifth more
compute). With ``head.input_scale`` above 1 both dates are enlarged (bilinear) before the
encoder and the logits brought back to the input's size, so the encoder's first strides do not
swallow objects of one or two pixels (10 m imagery). No text side: prompts are accepted and ignored,
so the model plugs into the same pipeline, model file and training loop as ChangeCLIP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.model.config import ModelConfig
from backend.model.networks.changeclip import NamesPerDate, check_pair
from backend.model.networks.efficientnet import TAPS, EfficientNetLite
from backend.model.networks.fusion import FPN

_logger = logging.getLogger(__name__)


class SiameseChange(nn.Module):
    """``model(image_a, image_b) -> logits (B, 2, H, W)``; ``config.head.fusion_channels`` wide."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.head.fusion_channels
        fine = config.head.output_stride == 2
        self.encoder = EfficientNetLite(config.image_encoder, taps=(0, *TAPS) if fine else TAPS)
        channels = self.encoder.out_channels[1:] if fine else self.encoder.out_channels
        self.squeeze = nn.ModuleList([_squeeze(3 * c, width) for c in channels])
        self.fpn = FPN([width] * len(channels), width)
        self.fine: nn.Module | None = None
        self.refine: nn.Module | None = None
        head_width = width
        if fine:
            head_width = FINE_WIDTH
            self.fine = _squeeze(3 * self.encoder.out_channels[0], FINE_WIDTH)
            both = width + FINE_WIDTH
            self.refine = nn.Sequential(  # depthwise-separable: cheap at stride 2
                nn.Conv2d(both, both, 3, padding=1, groups=both, bias=False),
                nn.BatchNorm2d(both),
                nn.ReLU(True),
                _squeeze(both, FINE_WIDTH),
            )
        self.head = nn.Sequential(
            nn.Conv2d(head_width, head_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_width),
            nn.ReLU(True),
            nn.Dropout(config.head.dropout),
            nn.Conv2d(head_width, 2, 1),
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
        b, size = image_a.shape[0], image_a.shape[-2:]
        scale = self.config.head.input_scale
        if scale != 1.0:  # to multiples of 32 again, as the encoder's strides need
            enlarged = [max(32, round(side * scale / 32) * 32) for side in size]
            image_a, image_b = (
                F.interpolate(x, size=enlarged, mode="bilinear", align_corners=False) for x in (image_a, image_b)
            )
        levels = [_difference(f, b) for f in self.encoder(torch.cat([image_a, image_b]))]
        if self.fine is not None and self.refine is not None:
            finest, levels = levels[0], levels[1:]
        features = self.fpn([sq(f) for sq, f in zip(self.squeeze, levels, strict=True)])[0]
        if self.fine is not None and self.refine is not None:
            fine = self.fine(finest)
            up = F.interpolate(features, size=fine.shape[-2:], mode="bilinear", align_corners=False)
            features = self.refine(torch.cat([up, fine], dim=1))
        logits = self.head(features)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


FINE_WIDTH = 32  # channels of the stride-2 refinement (output_stride 2)


def _squeeze(cin: int, cout: int) -> nn.Sequential:
    """1x1 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


def _difference(features: Tensor, batch: int) -> Tensor:
    """``cat(a, b, |a - b|)`` of one level whose first ``batch`` rows are date a, the rest date b."""
    a, b = features[:batch], features[batch:]
    return torch.cat([a, b, (a - b).abs()], dim=1)
