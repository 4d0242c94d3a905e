"""``make bench``: run every benchmark in its own process and collect the figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = [
    ("bench.pipeline_bench", "pipeline.json"),
    ("bench.vectorize_bench", "vectorize.json"),
    ("bench.model_figures", "model_figures.json"),
    ("bench.labels_bench", "labels.json"),
    ("bench.batch_bench", "batch.json"),
]


def main() -> int:
    """Run the benchmarks one after the other; return non-zero if one failed."""
    failed = 0
    for module, name in BENCHMARKS:
        print(f"== {module}", flush=True)
        done = subprocess.run([sys.executable, "-m", module, str(RESULTS / name)], check=False)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
