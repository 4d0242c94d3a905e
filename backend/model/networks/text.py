"""The text side: tokenizer, a CLIP text tower that takes learned context, the context decoder."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.lru_cache(maxsize=1)
def _tokenizer() -> open_clip.SimpleTokenizer:
    # CLIP's BPE vocabulary ships inside the open_clip package: no download.
    return open_clip.SimpleTokenizer()


@functools.lru_cache(maxsize=4096)
def _tokenize_one(text: str, length: int) -> Tensor:
    ids: Tensor = _tokenizer()([text], context_length=length)[0]
    return ids


def tokenize(texts: Sequence[str], length: int) -> Tensor:
    """Token ids (N, length) with CLIP's tokenizer; each string is tokenised once per process."""
    return torch.stack([_tokenize_one(t, length) for t in texts])


class PromptTextEncoder(nn.Module):
    """CLIP's text tower with ``n_ctx`` learned context vectors spliced after the start token.

    Built from the parts of an open_clip ``CLIP`` (token_embedding, positional_embedding,
    transformer, ln_final, text_projection); the prompt is tokenised to ``length`` tokens, so the
    sequence is ``n_ctx + length`` long and must fit the tower's positional embedding. With
    ``n_ctx = 0`` and ``length = 77`` this is exactly ``CLIP.encode_text``.
    """

    attn_mask: Tensor

    def __init__(self, clip: open_clip.CLIP, n_ctx: int, length: int) -> None:
        super().__init__()
        n_pos = clip.positional_embedding.shape[0]
        if n_ctx + length > n_pos:
            raise ValueError(f"{n_ctx} context tokens + {length} prompt tokens exceed the tower's {n_pos} positions")
        width = clip.token_embedding.embedding_dim
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.n_ctx, self.length = n_ctx, length
        self.contexts = nn.Parameter(torch.empty(1, n_ctx, width)) if n_ctx else None
        if self.contexts is not None:
            nn.init.trunc_normal_(self.contexts, std=0.02)
        seq = n_ctx + length
        mask = torch.full((seq, seq), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.embed_dim = int(self._project(torch.zeros(1, width)).shape[-1])

    def _project(self, x: Tensor) -> Tensor:
        proj = self.text_projection
        if proj is None:
            return x
        out: Tensor = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return out

    def forward(self, ids: Tensor) -> Tensor:
        """Embed token ids (N, length) -> (N, E)."""
        x = self.token_embedding(ids)
        if self.contexts is not None:
            ctx = self.contexts.expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([x[:, :1], ctx, x[:, 1:]], dim=1)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        eot = ids.argmax(dim=-1) + self.n_ctx
        pooled: Tensor = self._project(x[torch.arange(x.shape[0], device=x.device), eot])
        return pooled

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Embed strings -> (N, E), one tower pass per distinct string."""
        unique = list(dict.fromkeys(texts))
        ids = tokenize(unique, self.length).to(self.token_embedding.weight.device)
        embedded: Tensor = self(ids)
        index = torch.tensor([unique.index(t) for t in texts], device=embedded.device)
        return embedded[index]


class ContextAttention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and a biased output projection.

    ChangeCLIP's (and DenseCLIP's) context-decoder attention: separate ``q_proj``, ``k_proj``,
    ``v_proj`` without bias, ``proj`` with bias, dropout after the projection.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Attend from ``query`` (B, N, C) to ``key``/``value`` (B, M, C) -> (B, N, C)."""
        b, n, c = query.shape
        h = self.heads

        def split(x: Tensor) -> Tensor:
            return x.view(b, -1, h, c // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q_proj(query)), split(self.k_proj(key)), split(self.v_proj(value))
        )
        projected: Tensor = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
        return projected


class ContextDecoderLayer(nn.Module):
    """Pre-norm decoder layer: self-attention, cross-attention to the (already normalised) memory, MLP."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = ContextAttention(dim, heads, dropout)
        self.cross_attn = ContextAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 4, dim))

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Update queries (B, K, C) from memory tokens (B, N, C)."""
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q)
        x = x + self.cross_attn(self.norm2(x), memory, memory)
        out: Tensor = x + self.dropout(self.mlp(self.norm3(x)))
        return out


class ContextDecoder(nn.Module):
    """DenseCLIP's context decoder, as ChangeCLIP builds it: text queries attend to [global; dense] tokens.

    ``text + gamma * decoder(text, visual)``, gamma per channel, initialised small. The layers are
    ChangeCLIP's (:class:`ContextDecoderLayer`), so its published weights load unchanged; linear
    weights start truncated-normal (std 0.02) with zero bias, as there.
    """

    def __init__(
        self, dim: int, width: int, heads: int, layers: int, dropout: float = 0.1, gamma_init: float = 1e-4
    ) -> None:
        super().__init__()
        self.memory_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.layers = nn.ModuleList([ContextDecoderLayer(width, heads, dropout) for _ in range(layers)])
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.apply(_init_linear)
        self.gamma = nn.Parameter(torch.full((dim,), gamma_init))

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        """Update text (B, K, E) from visual tokens (B, N, E)."""
        memory = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.layers:
            x = layer(x, memory)
        update: Tensor = self.out_proj(x)
        return text + self.gamma * update


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
