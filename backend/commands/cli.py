"""Command line: ``python -m backend detect|doctor|models|info``.

``detect --json-progress`` prints one JSON object per line on stdout; this is the protocol the
QGIS plugin drives the engine with (see the README for the events and their fields). Exit
codes: 0 success, 2 bad input or a known failure (message says what to do), 130 canceled
(SIGINT or SIGTERM), 1 an unexpected error (a bug: the traceback is logged).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from backend import __version__
from backend.commands.report import ProgressBar, emit, json_progress
from backend.errors import CanceledError, ClipCDError
from backend.params import PROMPT_MATCHES, STRETCH_CHOICES, TTA_CHOICES

_log = logging.getLogger("backend")

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_CANCELED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m backend``."""
    parser = argparse.ArgumentParser(prog="python -m backend", description="ClipCD change detection engine.")
    parser.add_argument("--version", action="version", version=f"clipcd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    detect = commands.add_parser("detect", help="detect change between two rasters")
    detect.add_argument("--before", type=Path, required=True, help="raster of the earlier date (defines the grid)")
    detect.add_argument("--after", type=Path, required=True, help="raster of the later date")
    detect.add_argument("--out", type=Path, required=True, help="output folder")
    detect.add_argument("--model", type=Path, help="model file (.safetensors); default: the shipped model")
    detect.add_argument(
        "--prompts",
        default="",
        help='class names to look for, e.g. "building,road": the polygons CLIP labels so are kept (see --prompt-match)',
    )
    detect.add_argument(
        "--prompt-match",
        default="appeared",
        choices=PROMPT_MATCHES,
        help="with --prompts, keep the polygons whose after class (appeared, the default), before class "
        "(disappeared) or either class is a prompt",
    )
    detect.add_argument(
        "--clip",
        metavar="NAME",
        help="CLIP weights that label each polygon (python -m backend clip list); default: the best present",
    )
    detect.add_argument("--no-labels", action="store_true", help="do not label the polygons with CLIP")
    detect.add_argument("--threshold", type=float, help="change probability threshold in [0, 1] (default: card)")
    detect.add_argument("--min-area", type=float, default=0.0, help="drop polygons smaller than this (m²)")
    detect.add_argument("--simplify", type=float, default=0.0, help="simplification tolerance in CRS units")
    detect.add_argument("--cleanup", type=int, default=0, help="morphological clean-up radius in pixels")
    detect.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    detect.add_argument("--tile", type=int, help="tile size in pixels (default: card, 256)")
    detect.add_argument("--overlap", type=int, help="tile overlap in pixels (default: card, 64)")
    detect.add_argument("--batch-size", type=int, default=8, help="tile pairs per forward pass")
    detect.add_argument(
        "--tta",
        default="model",
        choices=TTA_CHOICES,
        help="test-time augmentation: average over mirrored (flips, 4x time) or also rotated (d4, 8x) tiles; "
        "model (default): the model card's choice",
    )
    detect.add_argument("--extent", type=_extent, help="xmin,ymin,xmax,ymax in the before raster's CRS")
    detect.add_argument(
        "--bands",
        type=parse_bands,
        help="the model's bands (red,green,blue) by number or name: 4,3,2 or B04,B03,B02 or red,green,blue "
        "(default: by the band descriptions, else colour interpretation, else 1,2,3)",
    )
    detect.add_argument(
        "--stretch",
        default="auto",
        choices=STRETCH_CHOICES,
        help="raw values to model input: auto (8-bit /255, raw bands by the model card's sensor rule, else 2-98 %%), "
        "percentile, none, sentinel-2 (DN/10000), landsat (Collection 2 L2: DN*0.0000275-0.2)",
    )
    detect.add_argument(
        "--s2-offset",
        type=float,
        choices=[0.0, -1000.0],
        help="Sentinel-2 DN offset when the metadata does not state it: -1000 from processing baseline 04.00 (2022)",
    )
    detect.add_argument(
        "--probability-dtype", default="uint8", choices=["uint8", "float16"], help="probability.tif data type"
    )
    detect.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    detect.add_argument("--json-progress", action="store_true", help="print JSON lines instead of a progress bar")
    detect.set_defaults(handler=_cmd_detect)

    doctor = commands.add_parser("doctor", help="check the installation and the GPU")
    doctor.set_defaults(handler=_cmd_doctor)

    from backend.commands.stack import add_parser as add_stack_parser

    add_stack_parser(commands)
    from backend.commands.clip import add_parser as add_clip_parser

    add_clip_parser(commands)

    from backend.model.cli import add_parsers

    add_parsers(commands)
    from backend.inference.model_source import SHIPPED_DIR, default_model_file

    commands.choices["info"].set_defaults(default_model=default_model_file())
    commands.choices["models"].set_defaults(shipped_dir=SHIPPED_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    json_mode = bool(getattr(args, "json_progress", False))
    _setup_logging(args.verbose, json_mode)
    try:
        return int(args.handler(args))
    except CanceledError as exc:
        _report_error(json_mode, exc, "canceled")
        return EXIT_CANCELED
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: stop now (outputs are still cleaned up)
        _report_error(json_mode, CanceledError("Canceled by the user; partial outputs were removed."), "canceled")
        return EXIT_CANCELED
    except ClipCDError as exc:
        _report_error(json_mode, exc, type(exc).__name__)
        return EXIT_INPUT
    except Exception as exc:
        _log.exception("unexpected error")
        _report_error(json_mode, exc, "bug")
        return EXIT_BUG


def _cmd_detect(args: argparse.Namespace) -> int:
    from backend.inference.pipeline import detect
    from backend.params import DetectParams
    from backend.raster.pixel_size import raster_pixel_size_m

    params = DetectParams(
        before=args.before,
        after=args.after,
        out_dir=args.out,
        model=args.model,
        prompts=tuple(p.strip() for p in args.prompts.split(",") if p.strip()),
        threshold=args.threshold,
        min_area=args.min_area,
        simplify=args.simplify,
        cleanup=args.cleanup,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        extent=args.extent,
        bands=args.bands,
        stretch=args.stretch,
        s2_offset=args.s2_offset,
        batch_size=args.batch_size,
        tta=args.tta,
        write_preview=not args.no_preview,
        probability_dtype=args.probability_dtype,
        labels=not args.no_labels,
        clip=args.clip,
        prompt_match=args.prompt_match,
    )
    cancel = _install_cancel_handlers()
    if args.json_progress:
        emit(
            {
                "event": "start",
                "before": str(params.before),
                "after": str(params.after),
                "out": str(params.out_dir),
                "pixel_size_m": raster_pixel_size_m(params.before),
            }
        )
        result = detect(params, json_progress(), cancel.is_set)
        emit(
            {
                "event": "done",
                "outputs": {key: str(path) for key, path in result.outputs.items()},
                "polygons": result.polygons,
                "changed_area_m2": round(result.changed_area_m2, 3),
                "seconds": round(result.seconds, 3),
                "tiles": result.tiles,
                "tiles_per_second": round(result.tiles_per_second, 3),
                "device": result.device,
                "model": result.model,
                "threshold": result.threshold,
                "labels": result.labels,
                "labelled_with": result.labelled_with,
                "dropped_by_prompts": result.dropped,
            }
        )
    else:
        bar = ProgressBar(sys.stderr)
        result = detect(params, bar, cancel.is_set)
        bar.close()
        _log.info("%s", result.summary())
        for name, path in result.outputs.items():
            _log.info("  %-12s %s", name, path)
    return EXIT_OK


def _cmd_doctor(args: argparse.Namespace) -> int:
    from backend.commands.doctor import run_doctor

    return run_doctor(sys.stdout)


def _extent(text: str) -> tuple[float, float, float, float]:
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


def _install_cancel_handlers() -> threading.Event:
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


class _JsonLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        event = {"event": "log", "level": record.levelname, "message": record.getMessage()}
        event.update(getattr(record, "fields", None) or {})
        emit(event)


def _setup_logging(verbose: bool, json_mode: bool) -> None:
    handler: logging.Handler = _JsonLogHandler() if json_mode else logging.StreamHandler(sys.stderr)
    if not json_mode:
        handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("rasterio", "fiona", "pyogrio", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _report_error(json_mode: bool, exc: BaseException, kind: str) -> None:
    if json_mode:
        emit({"event": "error", "kind": kind, "message": str(exc)})
    else:
        sys.stderr.write(f"error: {exc}\n")
