"""Runs ``python -m backend detect --json-progress`` (or another engine command) as a child process.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.

The engine (torch, rasterio, its own GDAL and PROJ) never loads inside QGIS: QGIS's GDAL, PROJ
and NumPy clash with them. A child process also means a crash or an out-of-memory kill of the
model cannot take QGIS down, and a cancel is a SIGTERM that the engine turns into a clean stop
(partial outputs removed). The protocol is described in the README, "--json-progress".
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import subprocess  # nosec B404
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis_clipcd.engine.environment import worker_env
from qgis_clipcd.metadata import backend_root
from qgis_clipcd.params import RunParams

_log = logging.getLogger(__name__)

_LOG_LINES = 200


@dataclass
class WorkerResult:
    """How a worker run ended.

    Attributes:
        ok: True when the worker reported ``done`` and exited 0.
        outputs: Output name ("probability", "mask", "changes", "preview") -> path.
        summary: The ``done`` event (polygons, changed_area_m2, seconds, device, model, threshold...).
        error_kind: None on success; the ``error`` event's kind (``InputError``, ``canceled``, ``bug``...),
            ``crashed`` when the worker died without one, ``start`` when it could not be started.
        message: What went wrong, for the user; empty on success.
        log: The worker's log messages, stray output and, after a crash, its stderr tail.
        warnings: The engine's WARNING messages (a raster outside the model's pixel-size range...),
            for the message bar or the Processing feedback.
        start: The ``start`` event (input paths, ``pixel_size_m``).
        exit_code: The worker's exit status (negative: killed by that signal; -1: never started).
    """

    ok: bool
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error_kind: str | None = None
    message: str = ""
    log: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    start: dict[str, Any] = field(default_factory=dict)
    exit_code: int = -1


class Worker:
    """Runs one detection in a child process; :meth:`run` blocks until it ends.

    Args:
        cancel_grace: Seconds a canceled worker gets to clean up after SIGTERM before it is killed.
        poll: Seconds between checks of ``is_canceled`` while the worker is silent.
    """

    def __init__(self, cancel_grace: float = 20.0, poll: float = 0.1) -> None:
        self.cancel_grace = cancel_grace
        self.poll = poll

    def command(self, params: RunParams, python: str) -> list[str]:
        """The worker's argument list."""
        return [python, "-m", "backend", "detect", *params.to_argv(), "--json-progress"]

    def run(
        self,
        params: RunParams,
        python: str,
        on_progress: Callable[[float, str], None],
        is_canceled: Callable[[], bool],
    ) -> WorkerResult:
        """Run the detection; report progress; stop it when ``is_canceled()`` turns true."""
        return self.run_argv(self.command(params, python), on_progress, is_canceled)

    def run_argv(
        self, argv: list[str], on_progress: Callable[[float, str], None], is_canceled: Callable[[], bool]
    ) -> WorkerResult:
        """Run any engine command that speaks the ``--json-progress`` protocol (``detect``, ``clip get``, ...)."""
        if is_canceled():
            return self._finish(WorkerResult(ok=False), canceled=True, stderr=[])
        _log.info("starting worker: %s", " ".join(argv))
        try:
            process = subprocess.Popen(  # nosec B603
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=worker_env(),
                cwd=backend_root(),  # ``-m`` puts the cwd first on sys.path: make it the engine's folder
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            message = f"Could not start the backend worker {argv[0]!r}: {exc}. Set a Python with torch in the settings."
            return WorkerResult(ok=False, error_kind="start", message=message)

        lines: queue.Queue[str | None] = queue.Queue()
        stderr_tail: deque[str] = deque(maxlen=_LOG_LINES)
        readers = [
            threading.Thread(target=_pump, args=(process.stdout, lines.put, True), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, stderr_tail.append, False), daemon=True),
        ]
        for reader in readers:
            reader.start()

        result = WorkerResult(ok=False)
        canceled = False
        while True:
            if not canceled and is_canceled():
                canceled = True
                self._stop(process)
            try:
                line = lines.get(timeout=self.poll)
            except queue.Empty:
                continue
            if line is None:
                break
            self._handle(line, result, on_progress)

        result.exit_code = self._wait(process)
        for reader in readers:
            reader.join(timeout=5)
        return self._finish(result, canceled, list(stderr_tail))

    def _handle(self, line: str, result: WorkerResult, on_progress: Callable[[float, str], None]) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if line.strip():
                result.log.append(line.rstrip())
            return
        kind = event.get("event")
        if kind == "progress":
            on_progress(float(event.get("fraction", 0.0)), str(event.get("message", "")))
        elif kind == "log":
            level = str(event.get("level", "INFO"))
            result.log.append(f"{level}: {event.get('message', '')}")
            if level in ("WARNING", "ERROR", "CRITICAL"):
                result.warnings.append(str(event.get("message", "")))
        elif kind == "start":
            result.start = event
        elif kind == "done":
            result.summary = event
            result.outputs = {str(k): str(v) for k, v in dict(event.get("outputs", {})).items()}
        elif kind == "error":
            result.error_kind = str(event.get("kind", "bug"))
            result.message = str(event.get("message", ""))

    def _stop(self, process: subprocess.Popen[str]) -> None:
        """Ask the worker to cancel (it cleans up and exits 130); kill it if it does not within the grace time."""
        if process.poll() is not None:
            return
        _log.info("canceling worker %d", process.pid)
        if sys.platform == "win32":
            process.terminate()  # no SIGTERM on Windows: the process stops at once
        else:
            process.send_signal(signal.SIGTERM)
        threading.Thread(target=self._kill_later, args=(process,), daemon=True).start()

    def _kill_later(self, process: subprocess.Popen[str]) -> None:
        try:
            process.wait(timeout=self.cancel_grace)
        except subprocess.TimeoutExpired:
            _log.warning("worker %d ignored the cancel for %.0f s; killing it", process.pid, self.cancel_grace)
            process.kill()

    def _wait(self, process: subprocess.Popen[str]) -> int:
        try:
            return process.wait(timeout=self.cancel_grace)
        except subprocess.TimeoutExpired:  # closed its output but did not exit
            process.kill()
            return process.wait()

    @staticmethod
    def _finish(result: WorkerResult, canceled: bool, stderr: list[str]) -> WorkerResult:
        if canceled:
            for path in result.outputs.values():  # it finished before the cancel reached it
                Path(path).unlink(missing_ok=True)
            result.ok = False
            result.outputs = {}
            result.error_kind = "canceled"
            result.message = result.message or "Canceled by the user; partial outputs were removed."
            return result
        if result.exit_code == 0 and result.error_kind is None and result.summary:
            result.ok = True
            return result
        result.ok = False
        result.outputs = {}
        result.log.extend(line.rstrip() for line in stderr if line.strip())
        if result.error_kind is None:
            result.error_kind = "crashed"
            last = next((line.strip() for line in reversed(stderr) if line.strip()), "no output")
            how = f"exit code {result.exit_code}"
            if result.exit_code < 0:  # killed by a signal: SIGKILL is what the out-of-memory killer sends
                how = f"killed by signal {-result.exit_code}"
                if -result.exit_code == getattr(signal, "SIGKILL", 9):
                    how += " (SIGKILL: often the system running out of memory)"
            result.message = (
                f"The backend worker stopped unexpectedly ({how}): {last}. "
                "See the log for details; if it ran out of memory, try a smaller extent or the CPU device."
            )
        return result


def _pump(stream: Any, sink: Callable[[Any], None], mark_end: bool) -> None:
    """Copy lines from ``stream`` to ``sink``; then None if ``mark_end`` (the end of stdout ends the run loop)."""
    for line in stream:
        sink(line)
    if mark_end:
        sink(None)
