"""Which model a run uses.

A model file, else ``$CLIPCD_MODEL``, else the shipped model that fits the rasters' pixel size
(:mod:`backend.inference.model_pick`: ``clipcd-default.safetensors`` for aerial photos,
``clipcd-s2.safetensors`` for 10 m imagery, in ``resources/models`` or, installed, the package's
``_shipped_models``), else — only where no model file is there —
the small configuration with random weights, stated plainly in every log and report.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.inference.model_pick import pick_model, shipped_models
from backend.model import ModelCard, build_card, create_model, load_model, read_card
from backend.raster.pixel_size import PixelSize, raster_pixel_size_m

_log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def shipped_dir() -> Path:
    """The shipped model files: a checkout's (or the plugin's) ``resources/models``, else the installed package's.

    ``pip install clipcd`` puts them in ``backend/_shipped_models`` (pyproject.toml maps that data
    package onto ``resources/models``).
    """
    checkout = REPO_ROOT / "resources" / "models"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "_shipped_models"


SHIPPED_DIR = shipped_dir()
DEFAULT_MODEL_FILE = SHIPPED_DIR / "clipcd-default.safetensors"
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


def choose(path: Path | None, before: Path) -> Path | None:
    """The model file for a run: ``path``, else ``$CLIPCD_MODEL``, else the shipped model picked for ``before``."""
    if path is not None or os.environ.get("CLIPCD_MODEL"):
        return path
    picked = pick_model(raster_pixel_size(before), shipped_models(SHIPPED_DIR))
    if picked is None:
        return None
    _log.info("model: %s, picked because %s (--model overrides)", picked.path.name, picked.reason)
    return picked.path


def raster_pixel_size(path: Path) -> PixelSize | None:
    """The pixel size of the raster at ``path``, None when it cannot be read (the reader reports why)."""
    size = raster_pixel_size_m(path)
    return (size[0], size[1]) if size is not None else None


def accepts_prompts(card: object) -> bool:
    """Whether the model of ``card`` conditions on prompts (its config's ``accepts_prompts``; True without a card)."""
    return bool((getattr(card, "config", None) or {}).get("accepts_prompts", True))


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
