"""``python -m backend models`` and ``python -m backend info MODEL_FILE``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from backend.errors import ClipCDError
from backend.model.config import get_config, list_models
from backend.model.modelfile import read_card


def cmd_models(args: argparse.Namespace) -> int:
    """Print the model configs, one per line: name, kind, backbone, description; then the shipped model files."""
    for name in list_models():
        config = get_config(name)
        sys.stdout.write(f"{name:<22} {config.kind:<10} {config.backbone:<20} {config.description}\n")
    folder = getattr(args, "shipped_dir", None)
    if folder is not None:
        from backend.inference.model_pick import list_shipped

        sys.stdout.write(f"\nshipped model files ({folder}), picked by pixel size unless --model is given:\n")
        for line in list_shipped(folder):
            sys.stdout.write(f"  {line}\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print a model file's card as JSON; exit 2 with a message on stderr when it cannot be read.

    Three readable lines come first: ``range`` (the pixel sizes and sensors it was trained on, or
    "range unknown"), ``input_bands`` (names and centre wavelengths) and ``prompts`` (what prompts
    do with it and what needs CLIP weights).

    Without a file, the default model's card (``args.default_model``, set by the top-level CLI).
    """
    path = args.model_file or getattr(args, "default_model", None)
    if path is None:
        sys.stderr.write("error: no model file given and no default model is installed\n")
        return 2
    try:
        card = read_card(path)
    except ClipCDError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    shown = {
        "range": card.range_text(),
        "input_bands": card.bands_text(),
        "prompts": prompts_text(card.config),
        **json.loads(card.to_json()),
    }
    sys.stdout.write(json.dumps(shown, indent=2) + "\n")
    return 0


def prompts_text(config: dict[str, Any]) -> str:
    """What prompts do with this model, and what needs CLIP weights."""
    labels = "with CLIP weights (python -m backend clip get openai-vit-b-16) every change is also labelled"
    if config.get("accepts_prompts", True):
        return f"the model conditions on prompts; {labels} and prompts keep the matching changes"
    return f"no text side: prompts act only through CLIP labels, so they need CLIP weights; {labels}"


def add_parsers(subparsers: Any) -> None:
    """Register ``models`` and ``info`` on an argparse subparsers object (``func`` = the command)."""
    models = subparsers.add_parser("models", help="list the model configs")
    models.set_defaults(handler=cmd_models)
    info = subparsers.add_parser("info", help="print a model file's card as JSON (default: the default model)")
    info.add_argument("model_file", metavar="MODEL_FILE", nargs="?", help="a .safetensors model file")
    info.set_defaults(handler=cmd_info)
