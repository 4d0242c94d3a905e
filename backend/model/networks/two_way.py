"""SAM's two-way transformer: prompt tokens and image embeddings attend to each other (ChangeFine's decoder core).

The transformer of Segment Anything's mask decoder as its checkpoints describe it: each block lets
the tokens attend to themselves, then to the image, runs an MLP on the tokens, then lets the image
attend to the tokens; position encodings are added to queries and keys at every attention (the
first block's token self-attention excepted), and a last token-to-image attention ends it.
Token-image attentions work at half width (``downsample``). Parameter names match the
segment-anything checkpoint's ``mask_decoder.transformer.*`` keys.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention with separate projections, optionally at a reduced inner width."""

    def __init__(self, width: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = width // downsample
        if inner % heads:
            raise ValueError(f"inner width {inner} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(width, inner)
        self.k_proj = nn.Linear(width, inner)
        self.v_proj = nn.Linear(width, inner)
        self.out_proj = nn.Linear(inner, width)

    def _split(self, x: Tensor) -> Tensor:
        batch, count, width = x.shape
        return x.reshape(batch, count, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, Nq, C) queries over (B, Nk, C) keys and values."""
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).flatten(2)
        projected: Tensor = self.out_proj(out)
        return projected


class TwoWayBlock(nn.Module):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention."""

    def __init__(self, width: int, heads: int, mlp_width: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = Attention(width, heads)
        self.norm1 = nn.LayerNorm(width)
        self.cross_attn_token_to_image = Attention(width, heads, downsample)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("lin1", nn.Linear(width, mlp_width))
        self.mlp.add_module("act", nn.ReLU())
        self.mlp.add_module("lin2", nn.Linear(mlp_width, width))
        self.norm3 = nn.LayerNorm(width)
        self.norm4 = nn.LayerNorm(width)
        self.cross_attn_image_to_token = Attention(width, heads, downsample)

    def forward(self, tokens: Tensor, image: Tensor, token_pe: Tensor, image_pe: Tensor) -> tuple[Tensor, Tensor]:
        """Updated (tokens, image), both (B, N, C)."""
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)
        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, image + image_pe, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.cross_attn_image_to_token(image + image_pe, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token-to-image attention (SAM: depth 2, width 256, 8 heads, MLP 2048)."""

    def __init__(
        self, depth: int = 2, width: int = 256, heads: int = 8, mlp_width: int = 2048, downsample: int = 2
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(width, heads, mlp_width, downsample, skip_first_pe=i == 0) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(width, heads, downsample)
        self.norm_final_attn = nn.LayerNorm(width)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens (B, N, C) and a (B, C, H, W) image with its position encoding: (tokens, image as (B, HW, C))."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        queries, keys = tokens, image
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, image_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + image_pe, keys)
        return self.norm_final_attn(queries), keys
