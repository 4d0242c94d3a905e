"""The model a run trains: a backend model config with its starting weights."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from backend.errors import ClipCDError, InputError
from backend.model import create_model
from backend.model.factory import ClipCDModel
from backend.model.networks.efficientnet import EfficientNetLite, imagenet_weights_file, load_efficientnet_pytorch
from training.fit.config import ModelSection, Source

_log = logging.getLogger(__name__)


def build_training_model(section: ModelSection) -> ClipCDModel:
    """Create ``section.config`` with CLIP towers from ``pretrained`` and an ImageNet encoder from ``encoder_weights``.

    Raises:
        InputError: Unknown config, weights that cannot be found offline (the message names the
            local-file option), or ``encoder_weights`` for a model without an ImageNet encoder.
    """
    try:
        model = create_model(
            section.config, section.pretrained, miner_pretrained=section.miner_pretrained, **section.overrides
        )
    except ClipCDError as exc:
        if not any(w and not Path(w).expanduser().is_file() for w in (section.pretrained, section.miner_pretrained)):
            raise
        raise InputError(
            f"{exc}. --pretrained and --miner-pretrained take a CLIP catalogue name (openai-rn50, openai-vit-b-16, "
            "...: `python -m backend clip list`), an open_clip tag or a local file"
        ) from exc
    encoders = [m for m in model.modules() if isinstance(m, EfficientNetLite)]
    if section.encoder_weights is not None:
        if not encoders:
            raise InputError(f"model.encoder_weights is set but {section.config} has no ImageNet encoder")
        for net in encoders:
            path = (
                imagenet_weights_file(net.variant) if section.encoder_weights == "imagenet" else section.encoder_weights
            )
            unused = load_efficientnet_pytorch(net, Path(path))
            _log.info("%s encoder: ImageNet weights from %s (%d head tensors unused)", net.variant, path, len(unused))
        model.weights_source = f"{encoders[0].variant}: ImageNet ({Path(str(path)).name})"
    elif encoders:
        _log.warning("%s: the %s encoder starts from RANDOM weights", section.config, encoders[0].variant)
    return model.train()


def describe_sources(sources: Sequence[Source]) -> str:
    """One line naming a stage's data, e.g. ``levir-cd (train), dsifn (without 1, 5)``.

    A ``folder`` source is named by its folder (its split is not used); others by dataset and split.
    """
    parts = []
    for s in sources:
        folder = Path(s.root).name if s.root not in (".", "") else ""
        notes = [] if s.dataset == "folder" else [s.split]
        where = (folder or s.dataset) if s.dataset == "folder" else " ".join(filter(None, (s.dataset, folder)))
        if s.only:
            notes.append("only " + ", ".join(s.only))
        if s.exclude:
            notes.append("without " + ", ".join(s.exclude))
        parts.append(f"{where} ({'; '.join(notes)})" if notes else where)
    return ", ".join(parts)
