"""ChangeCLIP: siamese CLIP encoder, learned prompts, differential fusion, vision-language decoder."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.errors import InputError
from backend.model.config import ModelConfig
from backend.model.networks.decoder import VisionLanguageDecoder
from backend.model.networks.efficientnet import EfficientNetEncoder
from backend.model.networks.encoder import Features, build_encoder
from backend.model.networks.fusion import DifferenceFusion
from backend.model.networks.text import ContextDecoder, PromptTextEncoder
from backend.model.prompts import PromptMiner, PromptMode, merge_names

_logger = logging.getLogger(__name__)
_CACHE_LIMIT = 4096
NamesPerDate = tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]]  # class names per image, date A and date B


def check_pair(image_a: Tensor, image_b: Tensor, multiple: int = 32) -> None:
    """Refuse image pairs the model cannot take, saying how to fix them."""
    if image_a.ndim != 4 or image_a.shape[1] != 3 or image_a.shape != image_b.shape:
        raise InputError(
            f"expected two (B, 3, H, W) tensors of one shape, got {tuple(image_a.shape)} and {tuple(image_b.shape)}"
        )
    h, w = image_a.shape[-2:]
    if h % multiple or w % multiple:
        raise InputError(
            f"image height and width must be multiples of {multiple}, got {h}x{w}; pad the tiles to "
            f"{math.ceil(h / multiple) * multiple}x{math.ceil(w / multiple) * multiple}"
        )


def _text_embed_dim(clip: open_clip.CLIP) -> int:
    """Width of the CLIP text tower's output (its projection's, else the tower's)."""
    proj = clip.text_projection
    if isinstance(proj, nn.Linear):
        return int(proj.out_features)
    return int(proj.shape[-1]) if proj is not None else int(clip.token_embedding.embedding_dim)


class ChangeCLIP(nn.Module):
    """CLIP-guided change detection after ChangeCLIP.

    ``model(image_a, image_b, prompts=None)`` takes normalised (B, 3, H, W) tiles of the two dates
    (H, W multiples of 32) and returns change logits (B, 2, H, W): no change, change.

    Prompts: with ``prompts=None`` the names come from ``prompt_source`` ("auto": the frozen
    miner's top-k per image and date; "default": ``default_prompts``). A list of names replaces
    them (``prompt_mode = "replace"``) or goes first (``"join"``). ``reuse_a_names_for_b``
    reproduces the reference code's test-time use of date A's names for date B.
    """

    def __init__(self, config: ModelConfig, clip: open_clip.CLIP, miner: PromptMiner | None) -> None:
        super().__init__()
        self.config = config
        text_cfg, head = config.text, config.head
        self.encoder: nn.Module = (
            build_encoder(clip.visual, head.out_indices, config.dense)
            if config.image_encoder == "clip"
            else EfficientNetEncoder(config.image_encoder, _text_embed_dim(clip))
        )
        self.text_encoder = PromptTextEncoder(clip, text_cfg.context_tokens, text_cfg.length)
        embed_dim = int(self.encoder.embed_dim)
        self.context_decoder = ContextDecoder(
            embed_dim,
            text_cfg.decoder_width,
            text_cfg.decoder_heads,
            text_cfg.decoder_layers,
            text_cfg.decoder_dropout,
            text_cfg.gamma_init,
        )
        self.score_level = int(math.log2(self.encoder.dense_stride)) - 2  # RN: 3 (stride 32), ViT-B/16: 2
        in_channels = list(self.encoder.out_channels)
        in_channels[self.score_level] += 2
        self.fusion = DifferenceFusion(in_channels, head.fusion_channels)
        self.decoder = VisionLanguageDecoder(
            head.fusion_channels,
            embed_dim,
            head.dim,
            head.heads,
            head.window,
            head.depth,
            head.drop_path,
            head.dropout,
            head.text_dim,
        )
        self.miner = miner
        self.prompt_source = config.prompt_source
        self.default_prompts: list[str] = list(config.default_prompts)
        self.prompt_mode: PromptMode = "replace"
        self.reuse_a_names_for_b = False
        self.weights_source = "random"
        self._warned_prompts = False
        self._text_cache: dict[str, Tensor] = {}
        self._cache_key: tuple[object, ...] = ()

    # -- prompts -------------------------------------------------------------------------------
    def prompt_names(
        self,
        image_a: Tensor,
        image_b: Tensor,
        prompts: Sequence[str] | None = None,
        names: NamesPerDate | None = None,
    ) -> tuple[list[list[str]], list[list[str]]]:
        """The class names behind each image's foreground prompt, for date A and date B.

        ``names`` (per image, per date; e.g. from a mined-prompt cache) replaces the model's own
        prompt source, with the analyst's ``prompts`` first.
        """
        b = image_a.shape[0]
        if names is not None:
            if len(names[0]) != b or len(names[1]) != b:
                raise InputError(f"names must hold {b} lists per date, got {len(names[0])} and {len(names[1])}")
            if self.config.accepts_prompts:
                first = [p.strip() for p in prompts or [] if p.strip()]
                return [merge_names(first, n) for n in names[0]], [merge_names(first, n) for n in names[1]]
            names = None
        analyst = [p.strip() for p in prompts or [] if p.strip()]
        if analyst and not self.config.accepts_prompts:
            if not self._warned_prompts:
                _logger.warning(
                    "%s was trained with fixed prompts (%s): ignoring the class names %s",
                    self.config.name,
                    ", ".join(self.default_prompts),
                    analyst,
                )
                self._warned_prompts = True
            analyst = []
        src_a: list[list[str]] = [[] for _ in range(b)]
        src_b = src_a
        if not analyst or self.prompt_mode == "join":
            if self.prompt_source == "auto" and self.miner is not None:
                images = image_a if self.reuse_a_names_for_b else torch.cat([image_a, image_b])
                mined = self.miner.mine(images)
                src_a, src_b = mined[:b], (mined[:b] if self.reuse_a_names_for_b else mined[b:])
            else:
                src_a = src_b = [list(self.default_prompts) for _ in range(b)]
        names_a = [merge_names(analyst, s) for s in src_a]
        names_b = names_a if self.reuse_a_names_for_b else [merge_names(analyst, s) for s in src_b]
        return names_a, names_b

    def prompt_texts(self, names: Sequence[str]) -> list[str]:
        """Background and foreground prompt of one image."""
        return [self.config.text.background, self.config.text.foreground + ", ".join(names)]

    def encode_texts(self, texts: list[str]) -> Tensor:
        """Text embeddings (N, E); cached across calls when no gradient is wanted."""
        if self.training or torch.is_grad_enabled():
            return self.text_encoder.encode(texts)
        params = list(self.text_encoder.parameters())
        key = (params[0].device, params[0].dtype, *(p._version for p in params))
        if key != self._cache_key or len(self._text_cache) > _CACHE_LIMIT:
            self._text_cache, self._cache_key = {}, key
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            self._text_cache.update(zip(missing, self.text_encoder.encode(missing), strict=True))
        return torch.stack([self._text_cache[t] for t in texts])

    # -- forward -------------------------------------------------------------------------------
    def _attach_text(self, text: Tensor, feats: Features) -> tuple[Tensor, list[Tensor]]:
        """Context-decode the text, build the score map and concatenate it onto its level."""
        visual = torch.cat([feats.global_embedding[:, None], feats.dense.flatten(2).transpose(1, 2)], dim=1)
        text = self.context_decoder(text, visual)
        score = torch.einsum("bchw,bkc->bkhw", F.normalize(feats.dense, dim=1), F.normalize(text, dim=-1))
        levels = list(feats.levels)
        target = levels[self.score_level]
        if score.shape[-2:] != target.shape[-2:]:
            score = F.interpolate(score, size=target.shape[-2:], mode="bilinear", align_corners=False)
        levels[self.score_level] = torch.cat([target, score], dim=1)
        return text, levels

    def forward(
        self,
        image_a: Tensor,
        image_b: Tensor,
        prompts: Sequence[str] | None = None,
        names: NamesPerDate | None = None,
    ) -> Tensor:
        """Change logits (B, 2, H, W) for normalised tiles (B, 3, H, W) of the two dates."""
        check_pair(image_a, image_b)
        b = image_a.shape[0]
        names_a, names_b = self.prompt_names(image_a, image_b, prompts, names)
        texts = [t for names in (*names_a, *names_b) for t in self.prompt_texts(names)]
        text = self.encode_texts(texts).view(2, b, 2, -1)
        feats = self.encoder(torch.cat([image_a, image_b]))
        per_date = [
            Features([lv[i * b : (i + 1) * b] for lv in feats.levels], g, d)
            for i, (g, d) in enumerate(zip(feats.global_embedding.split(b), feats.dense.split(b), strict=True))
        ]
        text_a, levels_a = self._attach_text(text[0], per_date[0])
        text_b, levels_b = self._attach_text(text[1], per_date[1])
        logits = self.decoder(self.fusion(levels_a, levels_b), text_a, text_b)
        return F.interpolate(logits, size=image_a.shape[-2:], mode="bilinear", align_corners=False)
