"""Read a model file's card without torch: the safetensors header is plain JSON.

A safetensors file starts with an 8-byte little-endian header length, then that many bytes of
JSON; the ClipCD card is the JSON string ``__metadata__["clipcd_card"]``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from qgis_clipcd.models import store as model_store

_MAX_HEADER = 100 * 1024 * 1024


class CardError(ValueError):
    """The file is not a ClipCD model file (no safetensors header or no card)."""


def default_model() -> Path | None:
    """The default model file on this computer (the checkout's, else the verified download), or None."""
    return model_store.default_model_path()


def read_card(path: str | Path | None = None) -> dict[str, Any]:
    """The card of the model file at ``path`` (None: the default model).

    Raises:
        CardError: the file is missing, is not safetensors, or carries no ClipCD card; the
            message names the file and what to do. With no path and no default model on this
            computer yet, the message says it will be downloaded on the first run.
    """
    file = Path(path) if path else default_model()
    if file is None:
        raise CardError(
            f"the default model is not on this computer yet: it will be downloaded on the first run "
            f"({model_store.DEFAULT_MODEL_SIZE / 1e6:.1f} MB, into {model_store.models_dir()}). "
            "Without internet access, choose a local model file."
        )
    try:
        with file.open("rb") as stream:
            prefix = stream.read(8)
            if len(prefix) != 8:
                raise CardError(f"{file} is too short to be a model file; choose a .safetensors ClipCD model.")
            (size,) = struct.unpack("<Q", prefix)
            if size <= 0 or size > _MAX_HEADER:
                raise CardError(f"{file} is not a safetensors model file; choose a .safetensors ClipCD model.")
            header = json.loads(stream.read(size).decode("utf-8"))
    except OSError as exc:
        raise CardError(f"cannot read the model file {file}: {exc.strerror or exc}; check the path.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CardError(f"{file} is not a safetensors model file; choose a .safetensors ClipCD model.") from None
    raw = header.get("__metadata__", {}).get("clipcd_card") if isinstance(header, dict) else None
    if not isinstance(raw, str):
        raise CardError(f"{file} holds no ClipCD model card; choose a model written by ClipCD.")
    try:
        card = json.loads(raw)
    except json.JSONDecodeError:
        raise CardError(f"{file} has a damaged model card; re-export the model.") from None
    if not isinstance(card, dict):
        raise CardError(f"{file} has a damaged model card; re-export the model.")
    return card


def accepts_prompts(card: dict[str, Any]) -> bool:
    """Whether the model uses text prompts (``config.accepts_prompts``, default True)."""
    return bool(card.get("config", {}).get("accepts_prompts", True))


def default_threshold(card: dict[str, Any]) -> float:
    """The card's change threshold (0.5 when it has none)."""
    value = card.get("threshold")
    return float(value) if isinstance(value, int | float) else 0.5


def range_text(card: dict[str, Any]) -> str:
    """``"0.3-1.5 m, bands red 665 nm, green 560 nm, blue 490 nm"``; "range unknown" for older cards."""
    span = card.get("pixel_size_range_m")
    bands = card.get("bands") or []
    wavelengths = card.get("band_wavelengths_nm") or []
    named = (
        [f"{b} {nm} nm" for b, nm in zip(bands, wavelengths, strict=False)] if len(wavelengths) == len(bands) else bands
    )
    if not (isinstance(span, list) and len(span) == 2):
        return "range unknown" + (f"; bands {', '.join(map(str, named))}" if named else "")
    return f"{span[0]:g}-{span[1]:g} m; bands {', '.join(map(str, named))}"


def summary(card: dict[str, Any]) -> str:
    """A few lines for the dock: description's first sentence, training data, validation F1 per set."""
    config = card.get("config") or {}
    description = str(config.get("description") or config.get("name") or "ClipCD model")
    first = description.split(". ")[0].strip().rstrip(".")
    lines = [f"{first}."]
    data = (card.get("training") or {}).get("data")
    if data:
        lines.append(f"Trained on: {data}")
    lines.append(f"Pixel sizes: {range_text(card)}")
    validation = (card.get("metrics") or {}).get("validation") or {}
    scores = [
        f"{name}: {scores['f1']:.2f}"
        for name, scores in validation.items()
        if isinstance(scores, dict) and isinstance(scores.get("f1"), int | float)
    ]
    if scores:
        lines.append("Validation F1 — " + "; ".join(scores))
    return "\n".join(lines)
