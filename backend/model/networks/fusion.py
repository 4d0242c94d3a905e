"""Differential feature compensation: both dates' features fused per level into one map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """A plain feature pyramid: 1x1 laterals, top-down sums, 3x3 outputs (mmseg's FPN, no extras)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, out_channels, 1) for c in in_channels])
        self.output = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels])

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Fuse maps ordered fine to coarse; returns maps at the same strides."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:])
        return [conv(x) for conv, x in zip(self.output, laterals, strict=True)]


class HSigmoid(nn.Module):
    """``clamp((x + 3) / 6, 0, 1)``."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply the hard sigmoid."""
        return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    """Channel squeeze-excitation (ratio 16, hard-sigmoid gate) then a 1x1 projection with ReLU."""

    def __init__(self, channels: int, out_channels: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(channels // ratio, 8)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            HSigmoid(),
        )
        self.project = nn.Sequential(nn.Conv2d(channels, out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        """Reweight channels, then project."""
        out: Tensor = self.project(x * self.gate(x))
        return out


class DifferenceFusion(nn.Module):
    """Per level: ``SE(cat(FPN * w, ReLU(conv(|fA - fB|)), FPN))`` with ``w = sigmoid(1 - cos(fA, fB))``.

    The FPN runs over the concatenated dates; ``w`` is a one-channel gate that opens where the
    two dates' features point in different directions.
    """

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.fpn = FPN([2 * c for c in in_channels], channels)
        self.minus = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(c, channels, 1), nn.ReLU(inplace=True)) for c in in_channels]
        )
        self.se = nn.ModuleList([SqueezeExcite(3 * channels, channels) for _ in in_channels])

    def forward(self, feats_a: Sequence[Tensor], feats_b: Sequence[Tensor]) -> list[Tensor]:
        """Fuse the dates level by level -> maps with ``channels`` channels."""
        pyramid = self.fpn([torch.cat([a, b], dim=1) for a, b in zip(feats_a, feats_b, strict=True)])
        out = []
        for level, (a, b, p) in enumerate(zip(feats_a, feats_b, pyramid, strict=True)):
            gate = torch.sigmoid(1.0 - F.cosine_similarity(a, b, dim=1)).unsqueeze(1)
            minus = self.minus[level](torch.abs(a - b))
            out.append(self.se[level](torch.cat([p * gate, minus, p], dim=1)))
        return out
