"""Runs an install plan (``python -m venv``, ``pip install``...) step by step with progress and cancel.

Plain Python (no QGIS). Each step is a child process whose output lines are streamed; pip's
"Collecting", "Downloading", "Installing collected packages" and "Successfully installed" lines move
the progress within the step. :func:`run_plan` never raises: it returns an :class:`InstallResult`.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess  # nosec B404
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from qgis_clipcd.engine.environment import clean_env

_log = logging.getLogger(__name__)

LOG_LINES = 200
_STOP_GRACE = 10.0
#: Hints added to a failed step's message when its output holds the key.
_HINTS = {
    "ensurepip": "The base Python cannot create environments; on Debian/Ubuntu: sudo apt install python3-venv.",
    "No matching distribution found for torch": "No torch wheel fits this Python or system; see docs/install.md.",
    "Failed to establish a new connection": "pip could not reach the package index: check the network or proxy.",
    "ProxyError": "pip could not get through the proxy: set HTTPS_PROXY or pip.conf's proxy.",
    "No space left on device": "The disk is full: the engine needs about 3 to 6 GB.",
}


@dataclass
class InstallResult:
    """How an install plan ended.

    Attributes:
        ok: True when every step exited 0.
        message: What happened, for the user (what failed and what to do); a summary on success.
        log: The last :data:`LOG_LINES` lines: each step's command (``$ ...``) and its output.
        canceled: True when the user canceled it.
        failed_step: Index of the step that failed or was canceled; -1 when none did.
    """

    ok: bool
    message: str = ""
    log: list[str] = field(default_factory=list)
    canceled: bool = False
    failed_step: int = -1


def describe(step: Sequence[str]) -> str:
    """What a plan step does, in words."""
    args = list(step)
    if args[1:3] == ["-m", "venv"]:
        return f"Creating the environment {args[-1]}"
    if args[1:3] == ["-m", "pip"]:
        if "--upgrade" in args and "pip" in args:
            return "Updating pip"
        if "--index-url" in args:
            wanted = " ".join(a for a in args[args.index("--index-url") + 2 :] if not a.startswith("-"))
            return f"Installing {wanted} from {args[args.index('--index-url') + 1]}"
        if "-r" in args:
            return f"Installing the requirements in {Path(args[args.index('-r') + 1]).name}"
        return "Installing " + " ".join(args[4:])
    if args[1:2] == ["-c"]:
        return "Checking the installation"
    return "Running " + Path(args[0]).name


def _weight(step: Sequence[str]) -> float:
    """A step's share of the whole (downloading torch dominates)."""
    args = list(step)
    if args[1:3] == ["-m", "pip"] and "--index-url" in args:
        return 55.0
    if args[1:3] == ["-m", "pip"] and "-r" in args:
        return 30.0
    return 3.0


class _StepProgress:
    """Logs one step's output lines and turns them into overall progress that never goes back.

    Args:
        log: Where every line goes.
        on_progress: Called with the overall fraction and a message when a line moves the progress.
        title: The step's title, the start of each message.
        start: The overall fraction when the step starts.
        share: The step's share of the whole.
    """

    def __init__(
        self,
        log: deque[str],
        on_progress: Callable[[float, str], None],
        title: str,
        start: float,
        share: float,
    ) -> None:
        self.log = log
        self.on_progress = on_progress
        self.title = title
        self.start = start
        self.share = share
        self.fraction = 0.0
        self.collected = 0
        self.downloaded = 0

    def feed(self, line: str) -> None:
        """Log one line; report the progress when it moved."""
        self.log.append(line)
        text = line.strip()
        before = self.fraction
        if text.startswith("Collecting "):
            self.collected += 1
            self._reach(0.3 * (1.0 - 0.85**self.collected))
        elif text.startswith(("Downloading ", "Processing ")):
            self.downloaded += 1
            self._reach(0.3 + 0.4 * (1.0 - 0.8**self.downloaded))
        elif text.startswith("Installing collected packages"):
            self._reach(0.75)
        elif text.startswith("Successfully installed"):
            self._reach(1.0)
        elif text.startswith("Requirement already satisfied"):
            self._reach(self.fraction + 0.02)
        if self.fraction > before:
            self.on_progress(self.start + self.share * self.fraction, f"{self.title}: {text[:120]}")

    def _reach(self, value: float) -> None:
        self.fraction = max(self.fraction, min(value, 1.0))


def install_env() -> dict[str, str]:
    """The steps' environment: no QGIS Python/GDAL/PROJ settings; pip quiet about bars, prompts and updates."""
    env = clean_env()
    env.update(
        PYTHONUNBUFFERED="1",  # lines arrive as pip writes them
        PYTHONIOENCODING="utf-8",
        PYTHONNOUSERSITE="1",
        PIP_PROGRESS_BAR="off",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def run_plan(
    plan: Sequence[Sequence[str]],
    on_progress: Callable[[float, str], None],
    is_canceled: Callable[[], bool],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    poll: float = 0.1,
) -> InstallResult:
    """Run the steps in order; stop at the first failure, or at once when ``is_canceled()`` turns true."""
    log: deque[str] = deque(maxlen=LOG_LINES)
    try:
        return _run(plan, on_progress, is_canceled, cwd, env or install_env(), poll, log)
    except Exception as exc:  # never raise into the caller's thread
        _log.exception("install plan failed")
        return InstallResult(ok=False, message=f"The installer failed: {type(exc).__name__}: {exc}", log=list(log))


def _run(
    plan: Sequence[Sequence[str]],
    on_progress: Callable[[float, str], None],
    is_canceled: Callable[[], bool],
    cwd: Path | None,
    env: dict[str, str],
    poll: float,
    log: deque[str],
) -> InstallResult:
    weights = [_weight(step) for step in plan]
    total = sum(weights) or 1.0
    done = 0.0
    for index, step in enumerate(plan):
        title = f"Step {index + 1}/{len(plan)}: {describe(step)}"
        on_progress(done / total, title)
        if is_canceled():
            return _canceled(index, log)
        log.append("$ " + shlex.join(step))
        progress = _StepProgress(log, on_progress, title, done / total, weights[index] / total)
        try:
            code, canceled = _run_step(step, progress.feed, is_canceled, cwd, env, poll)
        except OSError as exc:
            message = f"{title} could not start ({step[0]}): {exc}."
            log.append(message)
            return InstallResult(ok=False, message=message, log=list(log), failed_step=index)
        if canceled:
            return _canceled(index, log)
        if code != 0:
            return _failed(index, title, code, log)
        done += weights[index]
        on_progress(done / total, title + ": done")
    return InstallResult(ok=True, message=f"All {len(plan)} steps succeeded.", log=list(log))


def _run_step(
    step: Sequence[str],
    report: Callable[[str], None],
    is_canceled: Callable[[], bool],
    cwd: Path | None,
    env: dict[str, str],
    poll: float,
) -> tuple[int, bool]:
    """Run one command, feeding its output lines to ``report``; (exit code, canceled)."""
    process = subprocess.Popen(  # nosec B603
        list(step),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=sys.platform != "win32",  # a cancel stops pip's own children too
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    reader.start()
    while True:
        if is_canceled():
            _stop(process)
            reader.join(timeout=2)
            return process.returncode if process.returncode is not None else -1, True
        try:
            line = lines.get(timeout=poll)
        except queue.Empty:
            continue
        if line is None:
            break
        report(line.rstrip("\r\n"))
    reader.join(timeout=5)
    return process.wait(), False


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    """Terminate the step (its whole process group on POSIX); kill it if it lingers."""
    if process.poll() is not None:
        return
    if sys.platform == "win32":
        process.terminate()
    else:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except OSError:
            process.terminate()
    try:
        process.wait(timeout=_STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _canceled(index: int, log: deque[str]) -> InstallResult:
    message = (
        f"Installation canceled at step {index + 1}. Nothing was changed in QGIS; "
        "press Install backend again to finish it (completed steps are quick the second time)."
    )
    log.append(message)
    return InstallResult(ok=False, message=message, log=list(log), canceled=True, failed_step=index)


def _failed(index: int, title: str, code: int, log: deque[str]) -> InstallResult:
    lines = list(log)
    start = max((i for i, line in enumerate(lines) if line.startswith("$ ")), default=-1) + 1
    output = [line for line in lines[start:] if line.strip()]  # this step's output only
    last = next((line.strip() for line in reversed(output) if "error" in line.lower()), None)
    last = last or (output[-1].strip() if output else "no output")
    hints = [hint for key, hint in _HINTS.items() if any(key in line for line in output)]
    message = " ".join([f"{title} failed (exit code {code}): {last}", *hints, "The log has the full output."])
    return InstallResult(ok=False, message=message, log=list(log), failed_step=index)
