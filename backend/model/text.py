"""The text side: tokenizer, a CLIP text tower that takes learned context, the context decoder."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import open_clip
import torch
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


class ContextDecoder(nn.Module):
    """DenseCLIP's context decoder: text queries attend to [global; dense] visual tokens.

    ``text + gamma * decoder(text, visual)``, gamma per channel, initialised small.
    """

    def __init__(
        self, dim: int, width: int, heads: int, layers: int, dropout: float = 0.1, gamma_init: float = 1e-4
    ) -> None:
        super().__init__()
        self.memory_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.layers = nn.ModuleList(
            [
                nn.TransformerDecoderLayer(
                    width,
                    heads,
                    dim_feedforward=width * 4,
                    dropout=dropout,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(layers)
            ]
        )
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.gamma = nn.Parameter(torch.full((dim,), gamma_init))

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        """Update text (B, K, E) from visual tokens (B, N, E)."""
        memory = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.layers:
            x = layer(x, memory)
        update: Tensor = self.out_proj(x)
        return text + self.gamma * update
