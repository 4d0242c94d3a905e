"""Create models from configs, optionally with CLIP weights from a tag or a local file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import open_clip
import torch

from backend.errors import InputError
from backend.model.config import ClipSpec, ModelConfig, get_config
from backend.model.config import list_models as _list_models
from backend.model.networks.changeclip import ChangeCLIP
from backend.model.networks.siamese import SiameseChange
from backend.model.networks.zeroshot import ZeroShotChange
from backend.model.prompts import CHANGECLIP_CLASSES, PromptMiner
from backend.model.weights import build_clip, load_clip_weights, read_state_dict, resolve_weights

_logger = logging.getLogger(__name__)
ClipCDModel = ChangeCLIP | ZeroShotChange | SiameseChange


def list_models() -> list[str]:
    """Names of the model configs :func:`create_model` accepts."""
    return _list_models()


def create_model(
    name: str, pretrained: str | None = None, *, miner_pretrained: str | None = None, **overrides: Any
) -> ClipCDModel:
    """Create a model from config ``name``.

    Args:
        name: One of :func:`list_models`.
        pretrained: CLIP weights for the change model's towers: an open_clip tag (``"openai"``,
            downloaded where there is internet), ``"default"`` (the config's tag) or a local file
            (.safetensors, open_clip .bin/.pt, OpenAI JIT .pt). None leaves random weights.
        miner_pretrained: Weights of the frozen prompt-mining CLIP; by default ``pretrained`` when
            the miner is the same open_clip model or ``pretrained="default"``, otherwise random
            (with a warning).
        **overrides: Config fields to replace; nested sections (``head``, ``text``, ``clip``)
            merge key by key.

    Returns:
        A :class:`ChangeCLIP` or, for a zero-shot config, a :class:`ZeroShotChange`, in eval mode.
    """
    return build_model(get_config(name, **overrides), pretrained, miner_pretrained=miner_pretrained)


def build_model(
    config: ModelConfig,
    pretrained: str | None = None,
    *,
    miner_pretrained: str | None = None,
    compute_miner: bool = True,
) -> ClipCDModel:
    """Build the model ``config`` describes (see :func:`create_model`).

    ``compute_miner=False`` skips computing the vocabulary's text embeddings (a model file
    brings its own).
    """
    if config.kind == "siamese" or config.clip is None:
        if pretrained is not None:
            raise InputError(f"{config.name} has no CLIP towers: pretrained={pretrained!r} does not apply")
        siamese = SiameseChange(config)
        return siamese.eval()
    clip_path = _resolve(config.clip, pretrained)  # fail fast, before building anything
    same = config.miner is not None and config.miner.model == config.clip.model  # one weight file fits both
    wanted = miner_pretrained
    if wanted is None and (same or pretrained == "default"):
        wanted = pretrained  # "default" gives the miner its own default tag
    miner_path = _resolve(config.miner, wanted) if config.miner is not None else None
    clip = build_clip(config.clip)
    loaded: dict[str, dict[str, torch.Tensor]] = {}
    _load(clip, clip_path, loaded)
    model: ChangeCLIP | ZeroShotChange
    match config.kind:
        case "zeroshot":
            model = ZeroShotChange(config, clip)
        case "changeclip":
            miner = None
            if config.miner is not None:
                miner_clip = build_clip(config.miner)
                if wanted is None and pretrained is not None and compute_miner:
                    _logger.warning(
                        "the prompt miner %s has random weights: pass miner_pretrained=... for automatic prompts",
                        config.miner.model,
                    )
                _load(miner_clip, miner_path, loaded)
                vocabulary = config.vocabulary or CHANGECLIP_CLASSES
                miner = PromptMiner(miner_clip, vocabulary, config.text.top_k, config.mean, config.std, compute_miner)
            model = ChangeCLIP(config, clip, miner)
        case _:
            raise InputError(f"unknown model kind {config.kind!r}; expected 'changeclip', 'zeroshot' or 'siamese'")
    if pretrained is None:
        model.weights_source = "random"
    elif pretrained == "default" or not Path(pretrained).expanduser().is_file():
        model.weights_source = (
            f"{config.clip.model}:{config.clip.pretrained if pretrained == 'default' else pretrained}"
        )
    else:
        model.weights_source = Path(pretrained).name
    return model.eval()


def _resolve(spec: ClipSpec, pretrained: str | None) -> Path | None:
    """Local file for ``pretrained`` (None stays None; "default" is the config's tag)."""
    if pretrained is None:
        return None
    if pretrained == "default":
        if spec.pretrained is None:
            raise InputError(f"{spec.model!r} has no default weight tag; pass a tag or a file")
        pretrained = spec.pretrained
    return resolve_weights(spec, pretrained)


def _load(clip: open_clip.CLIP, path: Path | None, cache: dict[str, dict[str, torch.Tensor]]) -> None:
    """Load the checkpoint at ``path`` into ``clip`` (each file is read once per build)."""
    if path is None:
        return
    key = str(path.resolve())
    if key not in cache:
        cache[key] = read_state_dict(path)
    load_clip_weights(clip, cache[key], str(path))
