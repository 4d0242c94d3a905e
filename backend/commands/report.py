"""What commands print while they work: JSON lines (``--json-progress``) or a text progress bar."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from backend.progress import ProgressFn


def emit(event: dict[str, Any]) -> None:
    """Print one JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def json_progress() -> ProgressFn:
    """A progress callback printing ``{"event": "progress", ...}`` lines, at most one per 0.5 %."""
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.005 or fraction >= 1.0:
            last[0] = fraction
            emit({"event": "progress", "fraction": round(fraction, 4), "message": message})

    return report


class ProgressBar:
    """A one-line text progress bar on a terminal; plain log lines elsewhere."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._last = -1.0

    def __call__(self, fraction: float, message: str) -> None:
        """Redraw the bar (a terminal) or print a line every 10 % (a log file)."""
        if self.tty:
            filled = int(self.width * fraction)
            elapsed = time.perf_counter() - self.started
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%} {elapsed:6.1f}s {message:<30}"
            )
            self.stream.flush()
        elif fraction - self._last >= 0.1 or fraction >= 1.0:
            self._last = fraction
            self.stream.write(f"{fraction:6.1%} {message}\n")

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
