"""Zero-shot change: dense CLIP similarity to a prompt before and after, no trained change weights.

For each date, every feature cell gets a presence logit ``t * (max cos(cell, prompt) - max
cos(cell, background))`` from dense CLIP embeddings (by default the value path of the last layer,
which localises far better than CLIP's output tokens). With presence probabilities ``pa`` and
``pb``, "appeared" is ``pb * (1 - pa)``, "disappeared" ``pa * (1 - pb)``, "both" their sum. The
model returns logits (B, 2, H, W) whose difference is the logit of that probability, so it plugs
into the same pipeline as a trained ChangeCLIP.

What it is good for: a first look for a named, visually distinct class (buildings, water, bare
soil) when no trained change model exists. It is coarse (one decision per 16 or 32 pixels before
up-sampling), sensitive to the wording of the prompt and to illumination and season differences
between the dates, and far below a trained model on change-detection benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.model.config import ModelConfig, ZeroShotConfig
from backend.model.networks.changeclip import check_pair
from backend.model.networks.encoder import build_encoder
from backend.model.networks.text import PromptTextEncoder
from backend.model.prompts import PromptMode, merge_names

_EPS = 1e-6


class ZeroShotChange(nn.Module):
    """Change of a prompted class between two dates from a frozen CLIP; same call as ChangeCLIP."""

    def __init__(self, config: ModelConfig, clip: open_clip.CLIP) -> None:
        super().__init__()
        self.config = config
        self.settings: ZeroShotConfig = config.zeroshot or ZeroShotConfig()
        self.encoder = build_encoder(clip.visual, config.head.out_indices, config.dense, pyramid=False)
        self.text_encoder = PromptTextEncoder(clip, n_ctx=0, length=clip.positional_embedding.shape[0])
        self.default_prompts: list[str] = list(config.default_prompts)
        self.prompt_mode: PromptMode = "replace"
        self.prompt_source = config.prompt_source
        self.reuse_a_names_for_b = False  # accepted for interface parity; both dates use the same prompt
        self.weights_source = "random"
        self.requires_grad_(False)
        self._text_cache: dict[str, Tensor] = {}

    def names(self, prompts: Sequence[str] | None) -> list[str]:
        """The class names whose change is mapped."""
        analyst = [p.strip() for p in prompts or [] if p.strip()]
        if not analyst:
            return list(self.default_prompts)
        return merge_names(analyst, self.default_prompts) if self.prompt_mode == "join" else analyst

    def _text(self, names: Sequence[str]) -> Tensor:
        texts = [self.settings.template.format(n) for n in names]
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            with torch.no_grad():
                encoded = F.normalize(self.text_encoder.encode(missing), dim=-1)
            self._text_cache.update(zip(missing, encoded, strict=True))
        return torch.stack([self._text_cache[t] for t in texts])

    def presence(self, images: Tensor, names: Sequence[str]) -> Tensor:
        """Presence logits (B, h, w) of any of ``names`` per feature cell."""
        background = [n for n in self.settings.background if n not in names] or ["background"]
        text = self._text([*names, *background]).to(images.device)
        dense = F.normalize(self.encoder(images).dense, dim=1)
        sims = torch.einsum("bchw,kc->bkhw", dense, text.to(dense.dtype))
        k = self.settings.smooth
        if k > 1:
            sims = F.avg_pool2d(sims, k, stride=1, padding=k // 2, count_include_pad=False)
        fg = sims[:, : len(names)].amax(dim=1)
        bg = sims[:, len(names) :].amax(dim=1)
        return self.settings.temperature * (fg - bg)

    def forward(self, image_a: Tensor, image_b: Tensor, prompts: Sequence[str] | None = None) -> Tensor:
        """Logits (B, 2, H, W): no change, change of the prompted class."""
        check_pair(image_a, image_b)
        self._drop_stale_cache()
        b = image_a.shape[0]
        p = torch.sigmoid(self.presence(torch.cat([image_a, image_b]), self.names(prompts)))
        pa, pb = p[:b], p[b:]
        appeared, disappeared = pb * (1 - pa), pa * (1 - pb)
        match self.settings.direction:
            case "appeared":
                change = appeared
            case "disappeared":
                change = disappeared
            case _:
                change = appeared + disappeared
        change = change.clamp(_EPS, 1 - _EPS)
        logit = torch.log(change) - torch.log1p(-change)
        logits = torch.stack([torch.zeros_like(logit), logit], dim=1)
        return F.interpolate(logits, size=image_a.shape[-2:], mode="bilinear", align_corners=False)

    def _drop_stale_cache(self) -> None:
        params = list(self.text_encoder.parameters())
        key = (params[0].device, *(q._version for q in params))
        if key != getattr(self, "_cache_key", None):
            self._text_cache, self._cache_key = {}, key
