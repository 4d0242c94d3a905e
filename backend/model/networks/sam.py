"""SAM's ViT image encoder (ChangeFine's structure branch), written for the segment-anything checkpoint layout.

The encoder of Segment Anything (Kirillov et al., 2023) as its published checkpoints describe it:
a 16-pixel patch embedding, an absolute position grid, transformer blocks that attend inside
14 × 14 windows except a few global ones, with decomposed relative positions, and a neck of a
1 × 1 and a 3 × 3 convolution, each followed by a channel LayerNorm, to 256 channels at stride 16.
Parameter names match ``sam_vit_b_01ec64.pth``'s ``image_encoder.*`` keys, so that file loads
with a strict ``load_state_dict``. At an input smaller than the checkpoint's 1024 px (ChangeFine
runs 256), the position grid and the global blocks' relative-position tables keep the
checkpoint's shapes and are interpolated per call, as SAM's own code does for the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SamViTConfig:
    """A SAM image encoder's shape; :data:`SAM_VIT_B` is the published ViT-B."""

    width: int = 768
    depth: int = 12
    heads: int = 12
    global_blocks: tuple[int, ...] = (2, 5, 8, 11)
    window: int = 14
    patch: int = 16
    image_size: int = 1024
    out_channels: int = 256
    mlp_ratio: float = 4.0


SAM_VIT_B = SamViTConfig()


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each pixel's channel vector."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def relative_table(size_q: int, size_k: int, table: Tensor) -> Tensor:
    """The (size_q, size_k, C) relative-position embeddings of ``table``, interpolated to fit when needed."""
    span = 2 * max(size_q, size_k) - 1
    if table.shape[0] != span:
        table = F.interpolate(table.T[None], size=span, mode="linear")[0].T
    q = torch.arange(size_q, device=table.device)[:, None] * max(size_k / size_q, 1.0)
    k = torch.arange(size_k, device=table.device)[None, :] * max(size_q / size_k, 1.0)
    offsets = (q - k) + (size_k - 1) * max(size_q / size_k, 1.0)
    return table[offsets.long()]


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid with decomposed relative positions."""

    def __init__(self, width: int, heads: int, grid: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        head = width // heads
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head))

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the (B, H, W, C) grid."""
        batch, height, width, channels = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.heads, height * width, -1).unbind(0)
        head = q.shape[-1]
        rel_h = relative_table(height, height, self.rel_pos_h)
        rel_w = relative_table(width, width, self.rel_pos_w)
        grid_q = q.reshape(batch * self.heads, height, width, head)
        bias_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rel_h)
        bias_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rel_w)
        bias = (bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]).reshape(batch * self.heads, height * width, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=head**-0.5)
        out = out.reshape(batch, self.heads, height, width, head).permute(0, 2, 3, 1, 4)
        projected: Tensor = self.proj(out.reshape(batch, height, width, channels))
        return projected


class Block(nn.Module):
    """Pre-norm transformer block; ``window`` > 0 attends inside non-overlapping windows (padded)."""

    def __init__(self, config: SamViTConfig, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(config.width, eps=1e-6)
        self.attn = Attention(config.width, config.heads, window if window else grid)
        self.norm2 = nn.LayerNorm(config.width, eps=1e-6)
        hidden = int(config.width * config.mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("lin1", nn.Linear(config.width, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("lin2", nn.Linear(hidden, config.width))

    def forward(self, x: Tensor) -> Tensor:
        """Attention (windowed or global), then the MLP, each with its residual."""
        shortcut = x
        x = self.norm1(x)
        if self.window:
            height, width = x.shape[1:3]
            windows, padded = _partition(x, self.window)
            x = _unpartition(self.attn(windows), self.window, padded, (height, width))
        else:
            x = self.attn(x)
        x = shortcut + x
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


def _partition(x: Tensor, size: int) -> tuple[Tensor, tuple[int, int]]:
    batch, height, width, channels = x.shape
    pad_h, pad_w = (-height) % size, (-width) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = height + pad_h, width + pad_w
    x = x.reshape(batch, hp // size, size, wp // size, size, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, channels), (hp, wp)


def _unpartition(windows: Tensor, size: int, padded: tuple[int, int], shape: tuple[int, int]) -> Tensor:
    hp, wp = padded
    batch = windows.shape[0] // ((hp // size) * (wp // size))
    x = windows.reshape(batch, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, hp, wp, -1)[:, : shape[0], : shape[1]]


class PatchEmbed(nn.Module):
    """The 16-pixel patch embedding, channels last."""

    def __init__(self, config: SamViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, config.patch, stride=config.patch)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) to (B, S/16, S/16, width)."""
        patches: Tensor = self.proj(x)
        return patches.permute(0, 2, 3, 1)


class SamImageEncoder(nn.Module):
    """SAM's image encoder: (B, 3, S, S) normalised images to (B, 256, S/16, S/16) features.

    ``forward_levels`` also returns the last block's (B, width, S/16, S/16) tokens, which
    ChangeFine fuses with CLIP's.
    """

    def __init__(self, config: SamViTConfig = SAM_VIT_B) -> None:
        super().__init__()
        self.config = config
        grid = config.image_size // config.patch  # the checkpoint's grid; other inputs are adapted per call
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, config.width))
        self.blocks = nn.ModuleList(
            Block(config, 0 if i in config.global_blocks else config.window, grid) for i in range(config.depth)
        )
        out = config.out_channels
        self.neck = nn.Sequential(
            nn.Conv2d(config.width, out, 1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, 3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward_levels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(neck features, last block's tokens), both (B, C, S/16, S/16)."""
        x = self.patch_embed(x)
        if x.shape[1:3] != self.pos_embed.shape[1:3]:
            pos = F.interpolate(self.pos_embed.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic")
            x = x + pos.permute(0, 2, 3, 1)
        else:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        tokens = x.permute(0, 3, 1, 2)
        return self.neck(tokens), tokens

    def forward(self, x: Tensor) -> Tensor:
        """The neck's (B, 256, S/16, S/16) features."""
        return self.forward_levels(x)[0]
