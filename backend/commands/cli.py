"""Command line: ``python -m backend detect|doctor|models|info``.

``detect --json-progress`` prints one JSON object per line on stdout; this is the protocol the
QGIS plugin drives the engine with (see the README for the events and their fields). Exit
codes: 0 success, 2 bad input or a known failure (message says what to do), 130 canceled
(SIGINT or SIGTERM), 1 an unexpected error (a bug: the traceback is logged).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from backend import __version__
from backend.commands.options import add_run_options, install_cancel_handlers, params_from_args
from backend.commands.report import ProgressBar, emit, json_progress
from backend.errors import CanceledError, ClipCDError

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
    add_run_options(detect)
    detect.add_argument("--json-progress", action="store_true", help="print JSON lines instead of a progress bar")
    detect.set_defaults(handler=_cmd_detect)

    doctor = commands.add_parser("doctor", help="check the installation and the GPU")
    doctor.set_defaults(handler=_cmd_doctor)

    from backend.commands.stack import add_parser as add_stack_parser

    add_stack_parser(commands)
    from backend.commands.clip import add_parser as add_clip_parser

    add_clip_parser(commands)
    from backend.commands.batch import add_parser as add_batch_parser

    add_batch_parser(commands)

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
    from backend.raster.pixel_size import raster_pixel_size_m

    params = params_from_args(args, args.before, args.after, args.out)
    cancel = install_cancel_handlers()
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
