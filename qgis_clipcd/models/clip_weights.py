"""CLIP weights from the plugin: the engine's ``clip list | get | add | remove`` as background tasks.

The catalogue, the cache and every check live in the engine (``backend/clip``); the plugin runs
``python -m backend clip ACTION … --json-progress`` in the engine's Python and reads its JSON lines,
so the files the plugin fetches are the ones the command line finds and the other way round (the
worker's environment names the QGIS profile: the plugin's files go to ``<profile>/clipcd/clip``,
and the engine also searches the user's cache, where the command line puts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from qgis_clipcd.engine.worker import Worker, WorkerResult

#: What each action's task is called in the task manager.
_DESCRIPTIONS = {
    "list": "ClipCD: list CLIP weights",
    "get": "ClipCD: download CLIP weights {}",
    "add": "ClipCD: add CLIP weights {}",
    "remove": "ClipCD: remove CLIP weights {}",
}


@dataclass(frozen=True)
class ClipRow:
    """One line of ``clip list``: a catalogue entry or an added file, and whether it is on this computer."""

    name: str
    arch: str
    size_mb: int
    licence: str
    present: bool
    sha256: str
    source: str
    url: str | None
    note: str
    path: str | None

    @classmethod
    def from_event(cls, row: dict[str, Any]) -> ClipRow:
        """Build a row from one entry of the ``list`` event's ``weights``."""
        return cls(
            name=str(row["name"]),
            arch=str(row["arch"]),
            size_mb=int(row["size_mb"]),
            licence=str(row["licence"]),
            present=bool(row["present"]),
            sha256=str(row["sha256"]),
            source=str(row["source"]),
            url=row.get("url"),
            note=str(row.get("note", "")),
            path=row.get("path"),
        )


def clip_argv(python: str, action: str, *args: str) -> list[str]:
    """The engine command of one action, with the JSON-lines protocol."""
    return [python, "-m", "backend", "clip", action, *args, "--json-progress"]


class ClipTask(QgsTask):  # type: ignore[misc]
    """Runs one ``clip`` action in the engine off the main thread; ``done`` carries the WorkerResult.

    Canceling stops the engine process; an interrupted download keeps its partial file, so the next
    download resumes it.

    Attributes:
        result: How the action ended (set when the task has run).
        rows: For ``list``: the rows it returned.
    """

    done = pyqtSignal(object)

    def __init__(self, python: str, action: str, *args: str) -> None:
        super().__init__(_DESCRIPTIONS[action].format(*args[:1]), QgsTask.Flag.CanCancel)
        self.action = action
        self.argv = clip_argv(python, action, *args)
        self.result = WorkerResult(ok=False, error_kind="canceled", message="not run")
        self.rows: list[ClipRow] = []

    def run(self) -> bool:
        """Task thread: run the engine command; never raises."""
        try:
            self.result = Worker(cancel_grace=5.0).run_argv(
                self.argv, lambda fraction, _message: self.setProgress(100.0 * fraction), self.isCanceled
            )
            if self.result.ok and self.action == "list":
                self.rows = [ClipRow.from_event(row) for row in self.result.summary.get("weights", [])]
        except Exception as exc:  # never let an exception escape into the task manager's thread
            self.result = WorkerResult(ok=False, error_kind="bug", message=f"{type(exc).__name__}: {exc}")
        if self.result.error_kind == "canceled" and self.action == "get":
            self.result.message = "Download canceled; the part already downloaded is kept and resumed next time."
        return self.result.ok

    def finished(self, result: bool) -> None:
        """Main thread: hand the result on."""
        self.done.emit(self.result)
