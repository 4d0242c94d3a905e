"""What a batch saves: N generated pairs through one ``clipcd batch`` against N ``clipcd detect`` processes.

Usage: python -m bench.batch_bench [results.json]

Each pair is a 512² pair at 0.5 m (the shipped default model). A single run pays Python's and
torch's start-up and the model's loading every time; a batch pays them once. The figures are the
seconds per pair both ways and the batch's own overhead per pair (its time per pair minus the
detection time the runs report).
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.commands.synthetic import generate_pair

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
PAIRS = 10


def _cli(*args: str | Path) -> float:
    tick = time.perf_counter()
    subprocess.run([sys.executable, "-m", "backend", *map(str, args)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - tick


def measure(work: Path, count: int = PAIRS) -> dict[str, object]:
    """Seconds per pair: single ``detect`` processes, one ``batch``; the detection's own seconds."""
    rows = []
    for index in range(count):
        pair = generate_pair(work / f"pair{index}", size=512, pixel_size=0.5, seed=index)
        rows.append({"id": f"p{index}", "before": str(pair.before), "after": str(pair.after)})
    table = work / "pairs.csv"
    with table.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["id", "before", "after"])
        writer.writeheader()
        writer.writerows(rows)
    singles = [
        _cli("detect", "--before", r["before"], "--after", r["after"], "--out", work / "single" / r["id"]) for r in rows
    ]
    batch_seconds = _cli("batch", table, "--out", work / "batch")
    with (work / "batch" / "summary.csv").open(newline="", encoding="utf-8") as stream:
        detection = [float(row["seconds"]) for row in csv.DictReader(stream)]
    per_pair = batch_seconds / count
    return {
        "pairs": count,
        "single_run_s_per_pair": round(statistics.mean(singles), 2),
        "batch_s_per_pair": round(per_pair, 2),
        "detect_s_per_pair": round(statistics.mean(detection), 2),
        "batch_overhead_s_per_pair": round(per_pair - statistics.mean(detection), 2),
        "speed_up": round(statistics.mean(singles) / per_pair, 2),
    }


def main() -> None:
    """Measure, print and write the figures."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "batch.json"
    with tempfile.TemporaryDirectory(prefix="clipcd-batch-bench-") as tmp:
        figures = measure(Path(tmp))
    print(
        f"batch of {figures['pairs']} pairs (512², 0.5 m): {figures['batch_s_per_pair']} s per pair against "
        f"{figures['single_run_s_per_pair']} s per single detect process ({figures['speed_up']}x); detection itself "
        f"{figures['detect_s_per_pair']} s, the batch's overhead {figures['batch_overhead_s_per_pair']} s per pair"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
