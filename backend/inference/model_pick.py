"""Which shipped model fits a raster: the one whose card's pixel-size range holds the raster's pixel size.

Every ``*.safetensors`` under ``resources/models`` with a card is a candidate. A raster whose mean
pixel side lies inside a card's range gets that model (the narrowest range when several hold it);
otherwise the model whose range is nearest on a log scale (a 3 m raster is nearer 0.3-1.5 m than
10 m), and the run's range warning says it is outside. Cards without a range are picked only when
no card has one. ``--model`` (the dock's Model field, the algorithm's MODEL) bypasses the pick.
The plugin restates this rule without torch (``qgis_clipcd/models/choice.py``); a test checks both agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ModelFileError
from backend.model.modelfile import ModelCard, read_card
from backend.raster.pixel_size import PixelSize
from backend.raster.pixel_size import describe as describe_size

_log = logging.getLogger(__name__)

#: The model every raster without a known pixel size gets, and the first of equals.
DEFAULT_NAME = "clipcd-default.safetensors"


@dataclass(frozen=True)
class ModelPick:
    """A picked model file, its card and why it was picked."""

    path: Path
    card: ModelCard
    reason: str
    inside: bool


def shipped_models(folder: Path) -> list[tuple[Path, ModelCard]]:
    """The model files in ``folder`` whose cards read, default first, then by name."""
    found = []
    for path in sorted(folder.glob("*.safetensors"), key=lambda p: (p.name != DEFAULT_NAME, p.name)):
        try:
            found.append((path, read_card(path)))
        except ModelFileError as exc:
            _log.warning("skipping %s: %s", path.name, exc)
    return found


def _distance(size: float, span: Sequence[float]) -> float:
    """0 inside ``span``, else the log-scale distance to its nearer end."""
    low, high = span
    if low <= size <= high:
        return 0.0
    return min(abs(math.log(size / low)), abs(math.log(size / high)))


def pick_model(size: PixelSize | None, models: Sequence[tuple[Path, ModelCard]]) -> ModelPick | None:
    """The model for a raster of pixel ``size`` among ``models`` (see the module's rule); None when there is none."""
    if not models:
        return None
    ranged = [(path, card) for path, card in models if card.pixel_size_range_m is not None]
    if size is None or not ranged:
        path, card = models[0]
        why = "the pixel size is unknown (no CRS)" if size is None else "no model file records its pixel sizes"
        return ModelPick(path, card, f"{why}: the first model, {path.name}", inside=size is None)
    mean = (size[0] + size[1]) / 2.0

    def key(item: tuple[Path, ModelCard]) -> tuple[float, float]:
        span = item[1].pixel_size_range_m or [0.0, 0.0]
        return _distance(mean, span), math.log(span[1] / span[0])

    path, card = min(ranged, key=key)
    span = card.pixel_size_range_m or [0.0, 0.0]
    inside = _distance(mean, span) == 0.0
    where = "inside" if inside else "nearest to (log scale)"
    reason = f"the pixels are {describe_size(size)}, {where} {path.name}'s range of {span[0]:g}-{span[1]:g} m"
    return ModelPick(path, card, reason, inside)


def list_shipped(folder: Path) -> list[str]:
    """One line per shipped model file: name, pixel-size range, sensors (for ``backend models``)."""
    return [f"{path.name:<28} {card.range_text()}" for path, card in shipped_models(folder)]
