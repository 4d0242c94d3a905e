"""The options of one detection run, shared by ``detect`` and ``batch``, and the DetectParams they make."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from backend.params import PROMPT_MATCHES, STRETCH_CHOICES, TTA_CHOICES, DetectParams

_log = logging.getLogger(__name__)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Every ``detect`` option but the rasters and the output folder (``batch`` takes them as defaults)."""
    parser.add_argument("--model", type=Path, help="model file (.safetensors); default: the shipped model")
    parser.add_argument(
        "--prompts",
        default="",
        help='class names to look for, e.g. "building,road": the polygons CLIP labels so are kept (see --prompt-match)',
    )
    parser.add_argument(
        "--prompt-match",
        default="appeared",
        choices=PROMPT_MATCHES,
        help="with --prompts, keep the polygons whose after class (appeared, the default), before class "
        "(disappeared) or either class is a prompt",
    )
    parser.add_argument(
        "--clip",
        metavar="NAME",
        help="CLIP weights that label each polygon (python -m backend clip list); default: the best present",
    )
    parser.add_argument("--no-labels", action="store_true", help="do not label the polygons with CLIP")
    parser.add_argument("--threshold", type=float, help="change probability threshold in [0, 1] (default: card)")
    parser.add_argument("--min-area", type=float, default=0.0, help="drop polygons smaller than this (m²)")
    parser.add_argument("--simplify", type=float, default=0.0, help="simplification tolerance in CRS units")
    parser.add_argument("--cleanup", type=int, default=0, help="morphological clean-up radius in pixels")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--tile", type=int, help="tile size in pixels (default: card, 256)")
    parser.add_argument("--overlap", type=int, help="tile overlap in pixels (default: card, 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="tile pairs per forward pass")
    parser.add_argument(
        "--tta",
        default="model",
        choices=TTA_CHOICES,
        help="test-time augmentation: average over mirrored (flips, 4x time) or also rotated (d4, 8x) tiles; "
        "model (default): the model card's choice",
    )
    parser.add_argument("--extent", type=extent, help="xmin,ymin,xmax,ymax in the before raster's CRS")
    parser.add_argument(
        "--bands",
        type=parse_bands,
        help="the model's bands (red,green,blue) by number or name: 4,3,2 or B04,B03,B02 or red,green,blue "
        "(default: by the band descriptions, else colour interpretation, else 1,2,3)",
    )
    parser.add_argument(
        "--stretch",
        default="auto",
        choices=STRETCH_CHOICES,
        help="raw values to model input: auto (8-bit /255, raw bands by the model card's sensor rule, else 2-98 %%), "
        "percentile, none, sentinel-2 (DN/10000), landsat (Collection 2 L2: DN*0.0000275-0.2)",
    )
    parser.add_argument(
        "--s2-offset",
        type=float,
        choices=[0.0, -1000.0],
        help="Sentinel-2 DN offset when the metadata does not state it: -1000 from processing baseline 04.00 (2022)",
    )
    parser.add_argument(
        "--probability-dtype", default="uint8", choices=["uint8", "float16"], help="probability.tif data type"
    )
    parser.add_argument("--no-preview", action="store_true", help="do not write preview.png")


def params_from_args(args: argparse.Namespace, before: Path, after: Path, out: Path, **overrides: Any) -> DetectParams:
    """The run the options describe for one pair; ``overrides`` replace single fields (a batch row's)."""
    fields: dict[str, Any] = {
        "model": args.model,
        "prompts": tuple(p.strip() for p in args.prompts.split(",") if p.strip()),
        "threshold": args.threshold,
        "min_area": args.min_area,
        "simplify": args.simplify,
        "cleanup": args.cleanup,
        "device": args.device,
        "tile": args.tile,
        "overlap": args.overlap,
        "extent": args.extent,
        "bands": args.bands,
        "stretch": args.stretch,
        "s2_offset": args.s2_offset,
        "batch_size": args.batch_size,
        "tta": args.tta,
        "write_preview": not args.no_preview,
        "probability_dtype": args.probability_dtype,
        "labels": not args.no_labels,
        "clip": args.clip,
        "prompt_match": args.prompt_match,
    }
    fields.update(overrides)
    return DetectParams(before=before, after=after, out_dir=out, **fields)


def extent(text: str) -> tuple[float, float, float, float]:
    """``--extent`` text ``xmin,ymin,xmax,ymax`` as four numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"extent {text!r} must be four numbers xmin,ymin,xmax,ymax") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"extent {text!r} must be four numbers xmin,ymin,xmax,ymax")
    return values[0], values[1], values[2], values[3]


def parse_bands(text: str) -> tuple[int | str, ...]:
    """``--bands`` text (``4,3,2``, ``B04,B03,B02``, ``red,green,blue``) as three numbers or names."""
    tokens = [token.strip() for token in text.split(",")]
    if len(tokens) != 3 or not all(tokens):
        raise argparse.ArgumentTypeError(
            f"bands {text!r} must be three band numbers or names, e.g. 4,3,2 or B04,B03,B02 or red,green,blue"
        )
    return tuple(int(token) if token.isdigit() else token for token in tokens)


def install_cancel_handlers() -> threading.Event:
    """SIGINT and SIGTERM request a clean cancel: the run stops within one batch and cleans up."""
    cancel = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        _log.warning("cancel requested (signal %d); stopping after the current batch", signum)
        cancel.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return cancel
