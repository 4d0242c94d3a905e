"""Which model a run uses in QGIS: the analyst's file, else the shipped model that fits the pixel size.

The engine's rule (``backend/inference/model_pick.py``) restated without torch, reading the cards'
JSON headers: the model whose card's pixel-size range holds the raster's mean pixel side (the
narrowest when several do), else the nearest range on a log scale; without a pixel size, the
default model. The dock and the Processing algorithm both call :func:`choose_model` and pass the
result as ``--model``; ``tests/plugin/test_model_choice.py`` checks the plugin and the engine agree.
Where no model file is on this computer, the default model is downloaded (:mod:`.store`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis_clipcd.detection.pixel_size import describe
from qgis_clipcd.models import store as model_store
from qgis_clipcd.models.card import CardError, read_card

Card = dict[str, Any]


@dataclass(frozen=True)
class ModelChoice:
    """The ``--model`` of a run and why.

    Attributes:
        path: The model file to pass to the engine.
        missing: True when ``path`` is the default model's download target, not on this computer yet.
        reason: Why it was picked; "" when the analyst chose the file.
        inside: False when the pixel size lies outside the picked model's range.
    """

    path: str
    missing: bool
    reason: str
    inside: bool = True


def local_models(folder: Path | None = None) -> list[tuple[Path, Card]]:
    """The model files shipped beside the plugin (``resources/models``) whose cards read, default first."""
    folder = folder or model_store.shipped_dir()
    found = []
    names = sorted(folder.glob("*.safetensors"), key=lambda p: (p.name != model_store.DEFAULT_MODEL_NAME, p.name))
    for path in names:
        try:
            found.append((path, read_card(path)))
        except CardError:
            continue
    return found


def _span(card: Card) -> tuple[float, float] | None:
    span = card.get("pixel_size_range_m")
    if isinstance(span, list) and len(span) == 2 and all(isinstance(v, int | float) and v > 0 for v in span):
        return float(span[0]), float(span[1])
    return None


def _distance(size: float, span: tuple[float, float]) -> float:
    low, high = span
    if low <= size <= high:
        return 0.0
    return min(abs(math.log(size / low)), abs(math.log(size / high)))


def pick(size: tuple[float, float] | None, models: Sequence[tuple[Path, Card]]) -> tuple[Path, str, bool] | None:
    """``(file, reason, inside)`` for a raster of pixel ``size`` among ``models``; None when there is none."""
    if not models:
        return None
    ranged = [(path, card, span) for path, card in models if (span := _span(card)) is not None]
    if size is None or not ranged:
        why = "the pixel size is unknown (no CRS)" if size is None else "no model file records its pixel sizes"
        return models[0][0], f"{why}: the first model, {models[0][0].name}", size is None
    mean = (size[0] + size[1]) / 2.0
    path, _, span = min(ranged, key=lambda item: (_distance(mean, item[2]), math.log(item[2][1] / item[2][0])))
    inside = _distance(mean, span) == 0.0
    where = "inside" if inside else "nearest to (log scale)"
    return path, f"the pixels are {describe(size)}, {where} {path.name}'s range of {span[0]:g}-{span[1]:g} m", inside


def choose_model(
    chosen: str | None, pixel_size_m: tuple[float, float] | None, folder: Path | None = None
) -> ModelChoice:
    """The model for a run: ``chosen``, else the local model that fits ``pixel_size_m``, else the default model."""
    if chosen:
        return ModelChoice(chosen, False, "")
    picked = pick(pixel_size_m, local_models(folder))
    if picked is not None:
        path, reason, inside = picked
        return ModelChoice(str(path), False, reason, inside)
    default, missing = model_store.model_for_run(None)
    return ModelChoice(default, missing, "the default model (the only one known here)")
