"""Checkpoints: the model as a backend model file, the optimiser beside it.

``<run>/last.safetensors`` and ``<run>/best.safetensors`` are ordinary model files (a card and
safetensors tensors) that ``backend detect``, ``training.evaluate`` and the plugin load as they
are. ``<run>/last.state.pt`` holds what resuming needs besides the weights (iteration, optimiser
and schedule state, best score); it holds tensors and plain values only and is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from backend.errors import InputError
from backend.model import ModelCard, save_model
from backend.model.factory import ClipCDModel
from backend.model.weights import check_tensors
from backend.outputs.files import atomic_output

_log = logging.getLogger(__name__)
LAST, BEST, STATE = "last.safetensors", "best.safetensors", "last.state.pt"


def save_checkpoint(
    run_dir: Path,
    model: ClipCDModel,
    card: ModelCard,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    iteration: int,
    extra: dict[str, Any],
) -> None:
    """Write ``last.safetensors`` and ``last.state.pt`` (each atomically)."""
    save_model(model, card, run_dir / LAST)
    state = {
        "iteration": iteration,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        **extra,
    }
    with atomic_output(run_dir / STATE) as partial:
        torch.save(state, partial)


def find_resume(path: Path) -> tuple[Path, Path]:
    """The model file and state file to resume from: a run folder or its ``last.state.pt``."""
    run_dir = path if path.is_dir() else path.parent
    weights, state = run_dir / LAST, run_dir / STATE
    if not (weights.is_file() and state.is_file()):
        raise InputError(f"--resume {path}: expected {weights.name} and {state.name} in {run_dir}; is it a run folder?")
    return weights, state


def load_checkpoint(
    path: Path,
    model: ClipCDModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore weights, optimiser and schedule from a run folder; returns the state's other entries."""
    weights, state_file = find_resume(path)
    tensors = load_file(str(weights), device="cpu")
    check_tensors(model.state_dict(), tensors, str(weights))
    model.load_state_dict(tensors, strict=True)
    state: dict[str, Any] = torch.load(state_file, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state.pop("optimizer"))
    scheduler.load_state_dict(state.pop("scheduler"))
    _log.info("resumed %s at iteration %d", weights.parent, state["iteration"])
    return state
