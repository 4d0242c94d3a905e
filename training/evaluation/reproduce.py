"""The paper table from finished runs: ``python -m training.reproduce [--runs DIR] [--json]``.

Reads every ``<runs>/*/run.json``::

    {"name": "changeclip-vit-b16-levir-cd", "model": "changeclip-vit-b16", "dataset": "levir-cd",
     "protocol": "changeclip-merge", "test": {"oa": 0.992, "iou": 0.852, "f1": ..., "precision": ..., "recall": ...}}

and prints the five benchmarks (rows RN50 and ViT-B/16, IoU and F1 per dataset in %) beside
the numbers ChangeCLIP published. Scores in ``run.json`` are fractions in [0, 1]; a missing
run shows as "—". When several runs fill one cell, the newest ``run.json`` wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

MISSING = "—"
METRICS: tuple[str, ...] = ("oa", "iou", "f1", "precision", "recall")
DATASETS: dict[str, str] = {
    "levir-cd": "LEVIR-CD",
    "levir-cd-plus": "LEVIR-CD+",
    "whu-cd": "WHU-CD",
    "cdd": "CDD",
    "sysu-cd": "SYSU-CD",
}
BACKBONES: dict[str, str] = {"changeclip-rn50": "RN50", "changeclip-vit-b16": "ViT-B/16"}

#: ChangeCLIP's published test scores in %, one row for both backbones. Source: Dong et al.,
#: "ChangeCLIP: Remote sensing change detection with multimodal vision-language representation
#: learning", ISPRS J. Photogramm. Remote Sens. 208:53-69, 2024, as quoted by the project's
#: targets (issue 7) and ../shared/research/models.md; the CDD row in full is from the hyper.ai
#: benchmark page. The paper's text could not be retrieved here, so which backbone each figure
#: belongs to is not recorded (a reporter in dyzy41/ChangeCLIP issue #2 attributes LEVIR-CD 85.20 to RN50).
PAPER: dict[str, dict[str, float]] = {
    "levir-cd": {"iou": 85.20, "f1": 92.01, "precision": 93.40, "recall": 90.67, "oa": 99.20},
    "levir-cd-plus": {"iou": 75.63},
    "whu-cd": {"iou": 90.15},
    "cdd": {"iou": 95.87, "f1": 97.89, "precision": 98.02, "recall": 97.77, "oa": 99.48},
    "sysu-cd": {"iou": 71.41},
}


def read_runs(runs: Path) -> list[dict[str, Any]]:
    """Every readable ``<runs>/*/run.json`` with its test scores, oldest first; bad files are logged and skipped."""
    found = []
    for path in sorted(runs.glob("*/run.json"), key=lambda p: (p.stat().st_mtime, str(p))):
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            _log.warning("skipping %s: not readable JSON (%s)", path, exc)
            continue
        if not (isinstance(run, dict) and isinstance(run.get("test"), dict)):
            _log.warning("skipping %s: no 'test' scores", path)
            continue
        found.append({**run, "path": str(path)})
    return found


def _backbone(model: str) -> str | None:
    """``changeclip-vit-b16`` -> ``ViT-B/16``; also accepts the labels themselves and close spellings."""
    key = model.lower().replace("_", "-").replace("/", "")
    for name, label in BACKBONES.items():
        if key in (name, label.lower().replace("/", "")) or key.startswith(name):
            return label
    if "rn50" in key:
        return "RN50"
    if "vit-b16" in key or "vit-b-16" in key:
        return "ViT-B/16"
    return None


def build_table(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"rows": {row: {dataset: {metric: %}}}, "paper": PAPER, "runs": {row: {dataset: {"name", "protocol"}}}}``."""
    rows: dict[str, dict[str, dict[str, float]]] = {label: {} for label in BACKBONES.values()}
    names: dict[str, dict[str, dict[str, str]]] = {label: {} for label in BACKBONES.values()}
    for run in runs:
        row = _backbone(str(run.get("model", "")))
        dataset = str(run.get("dataset", ""))
        if row is None or dataset not in DATASETS:
            _log.info("%s: not a paper row (model %r, dataset %r)", run["path"], run.get("model"), dataset)
            continue
        scores = {
            m: round(100 * float(run["test"][m]), 2) for m in METRICS if isinstance(run["test"].get(m), int | float)
        }
        rows[row][dataset] = scores
        names[row][dataset] = {
            "name": str(run.get("name", Path(run["path"]).parent.name)),
            "protocol": str(run.get("protocol", "?")),
        }
    return {"rows": rows, "paper": PAPER, "runs": names}


def _cell(scores: dict[str, float] | None, metric: str) -> str:
    return f"{scores[metric]:.2f}" if scores and metric in scores else MISSING


def format_table(table: dict[str, Any]) -> str:
    """The table as text: IoU / F1 per dataset for each row and for the paper, then the LEVIR-CD detail."""
    width = 15
    header = f"{'':<28}" + "".join(f"{label:>{width}}" for label in DATASETS.values())
    lines = ["Test scores in %, IoU / F1 (change class)", header]
    body = [(f"ChangeCLIP {row} (ours)", table["rows"][row]) for row in BACKBONES.values()]
    body.append(("ChangeCLIP (paper)", table["paper"]))
    for label, cells in body:
        values = [f"{_cell(cells.get(d), 'iou')} / {_cell(cells.get(d), 'f1')}" for d in DATASETS]
        lines.append(f"{label:<28}" + "".join(f"{v:>{width}}" for v in values))
    lines += ["", "LEVIR-CD and CDD in full (OA / IoU / F1 / P / R)"]
    for dataset in ("levir-cd", "cdd"):
        for label, cells in body:
            detail = " / ".join(_cell(cells.get(dataset), m) for m in METRICS)
            lines.append(f"{DATASETS[dataset]:<10}{label:<28}{detail}")
    for row, cells in table["runs"].items():
        for dataset, run in cells.items():
            lines.append(f"{row} {DATASETS[dataset]}: run {run['name']}, protocol {run['protocol']}")
    lines.append("Paper: Dong et al., ChangeCLIP, ISPRS J. Photogramm. Remote Sens. 2024 (CDD via hyper.ai).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; return 0 (2 when the runs folder is missing)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.reproduce", description="The five-dataset table of finished runs beside the paper."
    )
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders (default: runs/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not args.runs.is_dir():
        sys.stderr.write(f"error: {args.runs} is not a folder; pass --runs with the folder that holds the runs.\n")
        return 2
    table = build_table(read_runs(args.runs))
    sys.stdout.write(json.dumps(table) + "\n" if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
