"""What a run writes as it goes: ``metrics.csv`` (one row per log step or validation) and ``curves.png``."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from backend.outputs.files import atomic_output

_log = logging.getLogger(__name__)
COLUMNS = ("iteration", "loss", "lr", "samples_per_s", "val_oa", "val_iou", "val_f1", "val_precision", "val_recall")


class Logbook:
    """Appends rows to ``<run>/metrics.csv`` (resumed runs keep the rows before their iteration)."""

    def __init__(self, run_dir: Path, start_iteration: int = 0) -> None:
        self.path = run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file() and start_iteration > 0:
            with self.path.open(newline="", encoding="utf-8") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= start_iteration]
        self._write()

    def add(self, **values: Any) -> None:
        """Add one row (missing columns stay empty) and rewrite the file."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown metrics columns {sorted(unknown)}")
        self.rows.append({k: values.get(k, "") for k in COLUMNS})
        self._write()

    def _write(self) -> None:
        with atomic_output(self.path) as partial, partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self) -> Path | None:
        """Draw loss, validation F1 and IoU against the iteration into ``curves.png``."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            _log.warning("matplotlib is not installed: no curves.png (metrics.csv has the figures)")
            return None
        series = {c: [(int(r["iteration"]), float(r[c])) for r in self.rows if r[c] != ""] for c in COLUMNS[1:]}
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        if series["loss"]:
            left.plot(*zip(*series["loss"], strict=True), lw=1)
        left.set(title="training loss", xlabel="iteration")
        for column, label in (("val_f1", "F1"), ("val_iou", "IoU")):
            if series[column]:
                right.plot(*zip(*series[column], strict=True), marker="o", label=label)
        right.set(title="validation (change class)", xlabel="iteration", ylim=(0, 1))
        right.legend(loc="lower right")
        fig.tight_layout()
        out = self.path.with_name("curves.png")
        with atomic_output(out) as partial:
            fig.savefig(partial, dpi=100, format="png")
        plt.close(fig)
        return out
