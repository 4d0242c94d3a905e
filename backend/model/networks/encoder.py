"""Siamese image encoders over open_clip's vision towers: four feature levels plus dense embeddings.

Both families return :class:`Features`: four maps at strides 4, 8, 16 and 32, a global embedding
(B, E) and a dense embedding (B, E, h, w) in CLIP's joint space, at stride 32 (RN) or the patch
stride (ViT). Positional embeddings are interpolated on the fly, so any input whose sides are
multiples of 32 works without touching the loaded weights. The ChangeCLIP configs build the towers
at ChangeCLIP's resolutions (RN50: a 16x16 attention-pool grid, ViT-B/16: 256 px), so at 256-px
tiles the RN grid is resized bilinearly (as the reference does) and the ViT grid not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn

Dense = Literal["attention", "value"]


@dataclass
class Features:
    """What the image encoder hands on."""

    levels: list[Tensor]  # strides 4, 8, 16, 32
    global_embedding: Tensor  # (B, E)
    dense: Tensor  # (B, E, h, w)


def resize_grid(pos: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize a square grid of positional embeddings (N, C) to ``size`` -> (h*w, C)."""
    side = math.isqrt(pos.shape[0])
    if (side, side) == size:
        return pos
    grid = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=size, mode=mode, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(size[0] * size[1], -1)


class DenseAttentionPool(nn.Module):
    """CLIP's RN attention pool over every token: a global and a dense embedding.

    Uses the q/k/v/c_proj weights and positional embedding of open_clip's ``AttentionPool2d``;
    the embedding is bilinearly resized to the feature grid. ``dense="value"`` makes the dense
    embedding from the value path alone (``c_proj(v_proj(x))``, MaskCLIP), better localised.
    The pool is borrowed, not registered: the tower that owns it keeps the only copy of its
    weights in the state dict (shared tensors cannot be written to a safetensors file).
    """

    def __init__(self, pool: nn.Module, dense: Dense = "attention") -> None:
        super().__init__()
        self._borrowed = (pool,)  # a tuple hides the module from nn.Module's registration
        self.dense_mode = dense

    @property
    def pool(self) -> nn.Module:
        """The open_clip ``AttentionPool2d`` whose weights this pool uses."""
        return self._borrowed[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return global (B, E) and dense (B, E, H, W) embeddings of a (B, C, H, W) map."""
        b, c, h, w = x.shape
        pool: Any = self.pool
        tokens = x.flatten(2).transpose(1, 2)  # B, HW, C
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        pos = pool.positional_embedding
        pos = torch.cat([pos[:1], resize_grid(pos[1:], (h, w), "bilinear")], dim=0)
        tokens = tokens + pos.to(tokens.dtype)
        heads = pool.num_heads
        q = pool.q_proj(tokens).reshape(b, -1, heads, c // heads).transpose(1, 2)
        k = pool.k_proj(tokens).reshape(b, -1, heads, c // heads).transpose(1, 2)
        v = pool.v_proj(tokens)
        attended = F.scaled_dot_product_attention(q, k, v.reshape(b, -1, heads, c // heads).transpose(1, 2))
        out = pool.c_proj(attended.transpose(1, 2).reshape(b, -1, c))
        dense = pool.c_proj(v[:, 1:]) if self.dense_mode == "value" else out[:, 1:]
        return out[:, 0], dense.transpose(1, 2).reshape(b, -1, h, w)


class ResNetEncoder(nn.Module):
    """open_clip ``ModifiedResNet``: the four stages and the dense attention pool."""

    def __init__(self, visual: ModifiedResNet, dense: Dense = "attention") -> None:
        super().__init__()
        self.visual = visual
        self.pool = DenseAttentionPool(visual.attnpool, dense)
        width = int(visual.layer1[0].conv1.in_channels)
        self.out_channels: list[int] = [width * 4, width * 8, width * 16, width * 32]
        self.embed_dim: int = int(visual.output_dim)
        self.dense_stride: int = 32

    def forward(self, image: Tensor) -> Features:
        """Encode a normalised (B, 3, H, W) image."""
        out = self.visual.forward_intermediates(image, indices=[1, 2, 3, 4], intermediates_only=True)
        levels = list(out["image_intermediates"])
        global_embedding, dense = self.pool(levels[-1])
        return Features(levels, global_embedding, dense)


class ViTEncoder(nn.Module):
    """open_clip ``VisionTransformer``: tapped blocks, a learned pyramid and ln_post/proj tokens.

    The token pass repeats ``VisionTransformer._embeds`` with the positional embedding resized
    to the input's patch grid, then runs the public ``transformer.resblocks``; at the native grid
    it equals ``visual.forward_intermediates`` (see the tests). ``pos_mode`` is the resize:
    ChangeCLIP's is bilinear (the default with the pyramid), open_clip's bicubic (the default
    without it, for zero-shot use of an unchanged CLIP).
    """

    def __init__(
        self,
        visual: VisionTransformer,
        out_indices: tuple[int, ...],
        dense: Dense = "attention",
        pyramid: bool = True,
        pos_mode: str | None = None,
    ) -> None:
        super().__init__()
        n_blocks = len(visual.transformer.resblocks)
        if pyramid and (len(out_indices) != 4 or max(out_indices) >= n_blocks):
            raise ValueError(f"out_indices must be 4 block indices below {n_blocks}, got {out_indices}")
        if not visual.transformer.batch_first:
            raise ValueError("the ViT tower must be batch-first (open_clip >= 2.32)")
        self.visual = visual
        self.out_indices = tuple(out_indices)
        self.dense_mode = dense
        self.pos_mode = pos_mode or ("bilinear" if pyramid else "bicubic")
        width = visual.conv1.out_channels
        self.patch = int(visual.conv1.kernel_size[0])
        self.embed_dim: int = int(visual.output_dim)
        self.out_channels: list[int] = [int(width)] * 4
        self.dense_stride: int = self.patch
        self.fpn = (
            nn.ModuleList()
            if not pyramid
            else nn.ModuleList(
                [
                    nn.Sequential(
                        nn.GroupNorm(1, width),
                        nn.ConvTranspose2d(width, width, 2, stride=2),
                        nn.BatchNorm2d(width),
                        nn.GELU(),
                        nn.ConvTranspose2d(width, width, 2, stride=2),
                    ),
                    nn.Sequential(nn.GroupNorm(1, width), nn.ConvTranspose2d(width, width, 2, stride=2)),
                    nn.GroupNorm(1, width),
                    nn.Sequential(nn.GroupNorm(1, width), nn.MaxPool2d(2)),
                ]
            )
        )

    def tokens(self, image: Tensor) -> tuple[Tensor, list[Tensor], tuple[int, int]]:
        """Final tokens (B, 1+hw, C), the tapped blocks' tokens and the patch grid."""
        v = self.visual
        x = v.conv1(image)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        pos = v.positional_embedding
        pos = torch.cat([pos[:1], resize_grid(pos[1:], grid, self.pos_mode)], dim=0)
        x = v.ln_pre(v.patch_dropout(x + pos.to(x.dtype)))
        taps: list[Tensor] = []
        blocks = v.transformer.resblocks
        for i, block in enumerate(blocks):
            if i == len(blocks) - 1 and self.dense_mode == "value":
                return x, taps, grid  # the caller runs the last block both ways
            x = block(x)
            if i in self.out_indices:
                taps.append(x)
        return x, taps, grid

    def embed(self, x: Tensor) -> Tensor:
        """ln_post then proj, token-wise."""
        x = self.visual.ln_post(x)
        proj = self.visual.proj
        return x @ proj if proj is not None else x

    def forward(self, image: Tensor) -> Features:
        """Encode a normalised (B, 3, H, W) image."""
        x, taps, (h, w) = self.tokens(image)
        b = image.shape[0]
        if self.dense_mode == "value":
            last: Any = self.visual.transformer.resblocks[-1]
            y = last.ln_1(x)
            width = y.shape[-1]
            value = F.linear(y, last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :])
            value = x + last.attn.out_proj(value)
            value = value + last.mlp(last.ln_2(value))
            x = last(x)
            if len(self.visual.transformer.resblocks) - 1 in self.out_indices:
                taps.append(x)
            dense_tokens = self.embed(value[:, 1:])
        else:
            dense_tokens = self.embed(x[:, 1:])
        levels = [fpn(t[:, 1:].transpose(1, 2).reshape(b, -1, h, w)) for fpn, t in zip(self.fpn, taps, strict=False)]
        global_embedding = self.embed(x[:, 0])
        return Features(levels, global_embedding, dense_tokens.transpose(1, 2).reshape(b, -1, h, w))


def build_encoder(
    visual: nn.Module, out_indices: tuple[int, ...], dense: Dense = "attention", pyramid: bool = True
) -> ResNetEncoder | ViTEncoder:
    """Wrap an open_clip vision tower; the family is read off its class.

    ``pyramid=False`` leaves out the ViT's learned pyramid (zero-shot use needs dense embeddings only).
    """
    if isinstance(visual, ModifiedResNet):
        return ResNetEncoder(visual, dense)
    if isinstance(visual, VisionTransformer):
        return ViTEncoder(visual, out_indices, dense, pyramid)
    raise ValueError(f"unsupported vision tower {type(visual).__name__}; use an RN or ViT CLIP")
