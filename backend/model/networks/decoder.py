"""Vision-language decoder: window-attention blocks that cross-attend to both dates' text tokens.

The layout is ChangeCLIP's ``SwinTextDecode`` (three up-sampling stages of two Swin blocks, each
block first attending from the raw pixel tokens to the text), so its published weights load
with a renaming only (``training/modelfile/import_changeclip.py`` holds the table).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth per sample."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Drop whole residual branches at random while training."""
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class TextCrossAttention(nn.Module):
    """Low-rank, single-head cross-attention from pixels (queries) to text tokens (keys, values).

    Queries come straight from the pixel tokens, without a norm, as in ChangeCLIP's
    ``LowRankBilinearAttention``; q/k are ``dim // 2`` wide, values ``2 * dim``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim // 2)
        self.k = nn.Linear(dim, dim // 2)
        self.v = nn.Linear(dim, dim * 2)
        self.out = nn.Linear(dim * 2, dim)

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        """Pixels (B, N, C) attend to text (B, T, C); returns the residual update."""
        attended = F.scaled_dot_product_attention(self.q(x), self.k(text), self.v(text))
        out: Tensor = self.out(attended)
        return out


def relative_position_index(window: int) -> Tensor:
    """Index into the (2w-1)^2 relative-position bias table for every token pair of a w x w window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowBlock(nn.Module):
    """A Swin block (window attention with relative position bias, optional shift) after text attention.

    Shifted windows mask pairs from different regions with -100 before the softmax (Swin's value).
    """

    bias_index: Tensor

    def __init__(self, dim: int, heads: int, window: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.text = TextCrossAttention(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop_path = DropPath(drop_path)

    def _shift_mask(self, hp: int, wp: int, device: torch.device) -> Tensor:
        ws, s = self.window, self.shift
        labels = torch.zeros(hp, wp, device=device)
        spans = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
        for n, (hs, vs) in enumerate((h, v) for h in spans for v in spans):
            labels[hs, vs] = n
        labels = labels.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
        different = labels[:, :, None] != labels[:, None, :]
        return torch.zeros_like(different, dtype=torch.float32).masked_fill(different, -100.0)

    def _window_attention(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window
        x = F.pad(x, (0, 0, 0, (-w) % ws, 0, (-h) % ws))
        hp, wp = x.shape[1], x.shape[2]
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), dims=(1, 2))
        windows = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        q, k, v = self.qkv(windows).reshape(windows.shape[0], ws * ws, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1).unsqueeze(0)  # 1, heads, n, n
        if self.shift:
            mask = self._shift_mask(hp, wp, x.device).to(x.dtype)
            bias = (bias + mask[:, None]).repeat(b, 1, 1, 1)  # (b * windows), heads, n, n
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        out = self.proj(out.transpose(1, 2).reshape(-1, ws * ws, c))
        x = out.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shift:
            x = torch.roll(x, (self.shift, self.shift), dims=(1, 2))
        return x[:, :h, :w].contiguous()

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        """Update a map (B, C, H, W) given text tokens (B, T, C)."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.text(tokens, text)
        grid = tokens.view(b, h, w, c)
        grid = grid + self.drop_path(self._window_attention(self.norm1(grid)))
        grid = grid + self.drop_path(self.mlp(self.norm2(grid)))
        out: Tensor = grid.permute(0, 3, 1, 2)
        return out.contiguous()


def _conv(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


class UpStage(nn.Module):
    """Upsample the coarse map, attend in windows and to text, merge with the skip map.

    ``merge`` sees ``cat(skip, upsampled)`` in that order (ChangeCLIP's ``Swin_Decoder``).
    """

    def __init__(self, channels: int, dim: int, heads: int, window: int, depth: int, drop_paths: list[float]) -> None:
        super().__init__()
        groups = 32 if dim % 32 == 0 else 1
        self.up = nn.Sequential(nn.Conv2d(channels, dim, 3, padding=1), nn.GroupNorm(groups, dim), nn.ReLU(True))
        self.blocks = nn.ModuleList(
            [WindowBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, drop_paths[i]) for i in range(depth)]
        )
        self.after = _conv(dim, dim, 1)
        self.skip = _conv(channels, dim, 1)
        self.merge = _conv(2 * dim, channels, 3)

    def forward(self, coarse: Tensor, skip: Tensor, text: Tensor) -> Tensor:
        """Return a map at ``skip``'s stride with ``channels`` channels."""
        x = self.up(F.interpolate(coarse, size=skip.shape[-2:], mode="nearest"))
        for block in self.blocks:
            x = block(x, text)
        out: Tensor = self.merge(torch.cat([self.skip(skip), self.after(x)], dim=1))
        return out


class VisionLanguageDecoder(nn.Module):
    """Three up-sampling stages from stride 32 to 4, then a dropout + 1x1 head -> 2 logits.

    Stochastic depth rises linearly from 0 to ``drop_path`` over the blocks of each stage.
    """

    def __init__(
        self,
        channels: int,
        text_in: int,
        dim: int,
        heads: int,
        window: int,
        depth: int,
        drop_path: float,
        dropout: float,
        text_dim: int,
    ) -> None:
        super().__init__()
        if text_dim != dim:
            raise ValueError(f"text_dim ({text_dim}) must equal the decoder width dim ({dim})")
        self.text_a = nn.Sequential(nn.Linear(text_in, text_dim), nn.LayerNorm(text_dim))
        self.text_b = nn.Sequential(nn.Linear(text_in, text_dim), nn.LayerNorm(text_dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.stages = nn.ModuleList([UpStage(channels, dim, heads, window, depth, rates) for _ in range(3)])
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(channels, 2, 1))

    def forward(self, levels: list[Tensor], text_a: Tensor, text_b: Tensor) -> Tensor:
        """Fused levels (strides 4..32) and text (B, K, E) per date -> logits (B, 2) at stride 4."""
        text = torch.cat([self.text_a(text_a), self.text_b(text_b)], dim=1)
        x = levels[3]
        for stage, skip in zip(self.stages, (levels[2], levels[1], levels[0]), strict=True):
            x = stage(x, skip, text)
        logits: Tensor = self.head(x)
        return logits
