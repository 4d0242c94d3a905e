"""Which model a run uses.

A model file, else the shipped default (``resources/models/clipcd-default.safetensors``, or
``$CLIPCD_MODEL``), else — only where that file is missing — the small configuration with random
weights, stated plainly in every log and report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.model import ModelCard, build_card, create_model, load_model, read_card

_log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_FILE = REPO_ROOT / "resources" / "models" / "clipcd-default.safetensors"
FALLBACK_CONFIG = "changeclip-small"
RANDOM_WEIGHTS_NOTE = (
    f"{FALLBACK_CONFIG} with RANDOM weights: the default model file {DEFAULT_MODEL_FILE} is missing, so the "
    "maps show the pipeline working end to end, not real change"
)
RANDOM_WEIGHTS_SHORT = f"{FALLBACK_CONFIG} (RANDOM weights, untrained)"


@dataclass
class LoadedModel:
    """A change model ready to run, its card, and a one-line description for logs and reports."""

    model: torch.nn.Module
    card: ModelCard
    description: str


def default_model_file() -> Path | None:
    """``$CLIPCD_MODEL`` or the shipped default model file, when it exists."""
    configured = os.environ.get("CLIPCD_MODEL")
    path = Path(configured) if configured else DEFAULT_MODEL_FILE
    return path if path.is_file() else None


def peek_card(path: Path | None) -> ModelCard | None:
    """The card of ``path`` (else of the default model file) read without its tensors; None without a file."""
    chosen = path or default_model_file()
    return read_card(chosen) if chosen is not None else None


def resolve(path: Path | None, device: torch.device) -> LoadedModel:
    """Load ``path``, else the default model file, else build the random-weight fallback."""
    chosen = path or default_model_file()
    if chosen is not None:
        model, card = load_model(chosen, device=str(device))
        trained_on = card.training.get("data") if isinstance(card.training, dict) else None
        description = f"{chosen.name} ({card.backbone}" + (f", trained on {trained_on})" if trained_on else ")")
        return LoadedModel(model, card, description)
    _log.warning("model: %s", RANDOM_WEIGHTS_NOTE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(FALLBACK_CONFIG)
    return LoadedModel(model.eval(), build_card(model), RANDOM_WEIGHTS_SHORT)
