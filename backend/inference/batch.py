"""Many scene pairs, one ``detect`` each: a PAIRS table, done-markers, resume, a summary.

Each pair writes ``OUT/<id>/`` exactly as ``detect`` does (all outputs or none), and only then a
done-marker, ``OUT/<id>/.clipcd-done.json``, holding the run's figures. A rerun skips the pairs
with a marker, redoes the others (a pair cut off by a crash left at most a hidden staging folder,
removed first), and rewrites ``OUT/summary.csv`` after every pair. A pair's bad input is recorded
with its message and the batch goes on; each model (and each CLIP labeller) is loaded once for all
the pairs that use it. One task per pair with a marker per output is what a distributed scheduler
needs to take over later.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import CanceledError, ClipCDError, InputError
from backend.inference import model_source
from backend.inference.pipeline import DetectResult, detect
from backend.inference.predict import select_device
from backend.labels.labeller import Labeller, plan_labels
from backend.params import DetectParams
from backend.progress import CancelFn, ProgressFn, never_canceled, no_progress, scaled

_log = logging.getLogger(__name__)

DONE_MARKER = ".clipcd-done.json"
SUMMARY = "summary.csv"
SUMMARY_FIELDS = ("id", "status", "error", "polygons", "changed_area_m2", "seconds", "model")
REQUIRED = ("id", "before", "after")
#: PAIRS columns that set one ``detect`` option for their pair (an empty cell keeps the default).
OPTION_COLUMNS = ("model", "prompts", "prompt_match", "threshold", "min_area", "bands", "stretch", "tta", "clip")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Pair:
    """One row of PAIRS: its id, rasters and the options it sets."""

    id: str
    before: Path
    after: Path
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class PairOutcome:
    """How one pair ended: ``done`` (now), ``skipped`` (done before) or ``failed`` (with the message)."""

    id: str
    status: str
    error: str = ""
    polygons: int | None = None
    changed_area_m2: float | None = None
    seconds: float | None = None
    model: str = ""

    def row(self) -> dict[str, Any]:
        """The pair's line of ``summary.csv``."""
        return {name: "" if getattr(self, name) is None else getattr(self, name) for name in SUMMARY_FIELDS}


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a PAIRS CSV (``id,before,after`` and option columns) or of a folder of pairs.

    A folder holds ``before/`` and ``after/`` (or ``A/`` and ``B/``) with the same file names; the
    id is the file's stem. Relative paths in a CSV are relative to the CSV's folder.

    Raises:
        InputError: No such file, a missing or unknown column, an empty or repeated id, a row
            without its rasters; the message names the line.
    """
    if path.is_dir():
        return _folder_pairs(path)
    if not path.is_file():
        raise InputError(f"PAIRS {path}: no such file or folder; give a CSV with id,before,after or a folder of pairs")
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        unknown = [c for c in columns if c not in (*REQUIRED, *OPTION_COLUMNS)]
        if missing or unknown:
            raise InputError(
                f"{path}, line 1: missing columns {missing}, unknown columns {unknown}; the columns are "
                f"{', '.join(REQUIRED)} and optionally {', '.join(OPTION_COLUMNS)}"
            )
        pairs: list[Pair] = []
        seen: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            pair_id = cells["id"]
            if not _ID.match(pair_id):
                raise InputError(f"{path}, line {line}: id {pair_id!r} must be a folder name (letters, digits, . _ -)")
            if pair_id in seen:
                raise InputError(f"{path}, line {line}: id {pair_id!r} repeats line {seen[pair_id]}")
            if not cells["before"] or not cells["after"]:
                raise InputError(f"{path}, line {line}: pair {pair_id!r} needs both a before and an after raster")
            seen[pair_id] = line
            options = {k: cells[k] for k in OPTION_COLUMNS if cells.get(k)}
            pairs.append(Pair(pair_id, path.parent / cells["before"], path.parent / cells["after"], options))
    if not pairs:
        raise InputError(f"{path}: no pairs (only a header?)")
    return pairs


def _folder_pairs(folder: Path) -> list[Pair]:
    for names in (("before", "after"), ("A", "B")):
        first, second = (folder / n for n in names)
        if first.is_dir() and second.is_dir():
            files = sorted(p for p in first.iterdir() if p.is_file() and not p.name.startswith("."))
            pairs = [Pair(p.stem, p, second / p.name) for p in files if (second / p.name).is_file()]
            if not pairs:
                raise InputError(f"{folder}: no file of {first.name}/ has a namesake in {second.name}/")
            return pairs
    raise InputError(f"{folder}: a folder of pairs holds before/ and after/ (or A/ and B/) with the same file names")


def pair_params(pair: Pair, base: Callable[..., DetectParams], out: Path) -> DetectParams:
    """The pair's run: ``base(before, after, out_dir, **overrides)`` with the pair's option columns.

    Raises:
        InputError: A cell that is not a valid value for its option (named with the pair's id).
    """
    overrides: dict[str, Any] = {}
    options = pair.options
    try:
        if "model" in options:
            overrides["model"] = Path(options["model"]).expanduser()
        if "prompts" in options:
            overrides["prompts"] = tuple(p.strip() for p in options["prompts"].split(",") if p.strip())
        for name in ("threshold", "min_area"):
            if name in options:
                overrides[name] = float(options[name])
        if "bands" in options:
            overrides["bands"] = tuple(
                int(b) if b.strip().isdigit() else b.strip() for b in options["bands"].split(",")
            )
        for name in ("prompt_match", "stretch", "tta", "clip"):
            if name in options:
                overrides[name] = options[name]
    except ValueError as exc:
        raise InputError(f"pair {pair.id!r}: {exc}") from exc
    return base(pair.before, pair.after, out / pair.id, **overrides)


class Batch:
    """Runs the pairs one after the other into ``out`` (see the module docstring)."""

    def __init__(self, pairs: list[Pair], out: Path, base: Callable[..., DetectParams]) -> None:
        self.pairs, self.out, self.base = pairs, out, base
        self.outcomes: dict[str, PairOutcome] = {}
        self._models: dict[Path | None, model_source.LoadedModel] = {}
        self._labellers: dict[tuple[Any, ...], Labeller | None] = {}

    def run(
        self,
        progress: ProgressFn = no_progress,
        is_canceled: CancelFn = never_canceled,
        on_pair: Callable[[PairOutcome], None] | None = None,
    ) -> dict[str, PairOutcome]:
        """Run every pair not done yet; the outcomes by id (also in ``summary.csv``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        total = len(self.pairs)
        for index, pair in enumerate(self.pairs):
            outcome = self._skip(pair) or self._run(
                pair, scaled(progress, index / total, (index + 1) / total), is_canceled
            )
            self.outcomes[pair.id] = outcome
            self.write_summary()
            if on_pair is not None:
                on_pair(outcome)
        progress(1.0, "batch done")
        return self.outcomes

    def _skip(self, pair: Pair) -> PairOutcome | None:
        marker = self.out / pair.id / DONE_MARKER
        if not marker.is_file():
            return None
        try:
            figures = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # an unreadable marker: redo the pair
        return PairOutcome(pair.id, "skipped", "", figures.get("polygons"), figures.get("changed_area_m2"),
                           figures.get("seconds"), figures.get("model", ""))  # fmt: skip

    def _run(self, pair: Pair, progress: ProgressFn, is_canceled: CancelFn) -> PairOutcome:
        folder = self.out / pair.id
        for leftover in folder.glob(".clipcd-*") if folder.is_dir() else []:
            shutil.rmtree(leftover, ignore_errors=True)  # a staging folder a killed run left behind
        try:
            params = pair_params(pair, self.base, self.out)
            loaded, labeller = self._resources(params)
            result = detect(params, progress, is_canceled, loaded=loaded, labeller=labeller)
        except CanceledError:
            raise
        except ClipCDError as exc:
            _log.warning("pair %s failed: %s", pair.id, exc)
            return PairOutcome(pair.id, "failed", str(exc))
        self._mark(folder, result)
        return PairOutcome(pair.id, "done", "", result.polygons, round(result.changed_area_m2, 3),
                           round(result.seconds, 3), result.model)  # fmt: skip

    def _resources(self, params: DetectParams) -> tuple[model_source.LoadedModel, Labeller | None]:
        """The pair's model and labeller, each loaded once per batch."""
        device = select_device(params.device)
        path = model_source.choose(params.model, params.before)
        if path not in self._models:
            self._models[path] = model_source.resolve(path, device)
        loaded = self._models[path]
        accepts = model_source.accepts_prompts(loaded.card)
        key = (params.labels, params.clip, params.prompts, accepts, str(device))
        if key not in self._labellers:
            self._labellers[key] = plan_labels(params, accepts, device)
        return loaded, self._labellers[key]

    @staticmethod
    def _mark(folder: Path, result: DetectResult) -> None:
        figures = {
            "polygons": result.polygons,
            "changed_area_m2": round(result.changed_area_m2, 3),
            "seconds": round(result.seconds, 3),
            "model": result.model,
            "labels": result.labels,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        partial = folder / f"{DONE_MARKER}.partial"
        partial.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        partial.replace(folder / DONE_MARKER)

    def write_summary(self) -> Path:
        """Write ``summary.csv`` (one row per pair run or skipped so far, in PAIRS order) atomically."""
        target = self.out / SUMMARY
        partial = self.out / f"{SUMMARY}.partial"
        with partial.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(self.outcomes[p.id].row() for p in self.pairs if p.id in self.outcomes)
        partial.replace(target)
        return target


def counts(outcomes: dict[str, PairOutcome]) -> dict[str, int]:
    """How many pairs are done, skipped and failed."""
    tally = {"done": 0, "skipped": 0, "failed": 0}
    for outcome in outcomes.values():
        tally[outcome.status] += 1
    return tally
