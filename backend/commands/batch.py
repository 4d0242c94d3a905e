"""``clipcd batch PAIRS --out DIR``: many scene pairs, resumable, with ``DIR/summary.csv``.

Exit status: 0 when every pair is done (now or before), 3 when some failed (their messages are in
the summary), 2 for a bad PAIRS file or option, 130 when canceled (the pair in progress is
cleaned up; the finished ones stay done, and a rerun continues).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import Any

from backend.commands.options import add_run_options, install_cancel_handlers, params_from_args
from backend.commands.report import ProgressBar, emit, json_progress
from backend.inference.batch import Batch, PairOutcome, counts, read_pairs

_log = logging.getLogger(__name__)
EXIT_SOME_FAILED = 3


def cmd_batch(args: argparse.Namespace) -> int:
    """Run the batch; see the module docstring for the exit status."""
    pairs = read_pairs(args.pairs)
    out: Path = args.out
    batch = Batch(pairs, out, functools.partial(params_from_args, args))
    done_before = sum((out / p.id / ".clipcd-done.json").is_file() for p in pairs)
    _log.info("%d pairs into %s; %d already done and skipped", len(pairs), out, done_before)
    cancel = install_cancel_handlers()
    if args.json_progress:
        emit({"event": "start", "pairs": len(pairs), "out": str(out), "already_done": done_before})
        outcomes = batch.run(json_progress(), cancel.is_set, _emit_pair)
    else:
        bar = ProgressBar(sys.stderr)
        try:
            outcomes = batch.run(bar, cancel.is_set, _log_pair)
        finally:
            bar.close()
    tally = counts(outcomes)
    summary = out / "summary.csv"
    _log.info("%d done, %d skipped (done before), %d failed; summary: %s", *tally.values(), summary)
    if args.json_progress:  # the stream ends with done (or error)
        emit({"event": "done", **tally, "summary": str(summary)})
    return EXIT_SOME_FAILED if tally["failed"] else 0


def _emit_pair(outcome: PairOutcome) -> None:
    emit({"event": "pair", **outcome.row()})


def _log_pair(outcome: PairOutcome) -> None:
    if outcome.status == "failed":
        _log.warning("%s: failed: %s", outcome.id, outcome.error)
    else:
        _log.info("%s: %s, %s polygons", outcome.id, outcome.status, outcome.polygons)


def add_parser(subparsers: Any) -> None:
    """Register ``batch``: PAIRS, ``--out`` and every ``detect`` option as the pairs' default."""
    batch = subparsers.add_parser(
        "batch",
        help="detect change in many pairs (a CSV id,before,after[,options] or a folder of pairs); resumable",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch.add_argument(
        "pairs", metavar="PAIRS", type=Path, help="CSV with id,before,after (+ option columns) or a folder"
    )
    batch.add_argument("--out", type=Path, required=True, help="output folder: one subfolder per pair, summary.csv")
    add_run_options(batch)
    batch.add_argument("--json-progress", action="store_true", help="print JSON lines instead of a progress bar")
    batch.set_defaults(handler=cmd_batch)
