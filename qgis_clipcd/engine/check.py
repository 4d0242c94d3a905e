"""Is there a Python that can run the engine, what can it do, and if not, how to get one.

:func:`check_engine` starts child processes (it imports torch in one): call it off the main thread,
e.g. through :class:`EngineCheckTask`. The plugin itself never imports torch.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess  # nosec B404
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from qgis_clipcd.engine import installer
from qgis_clipcd.engine.environment import (
    PYTHON_ENV,
    REQUIRED_MODULES,
    SETTINGS_KEY,
    can_run_backend,
    configured_python,
    find_python,
    installed_python,
    qgis_python,
    run_engine_python,
)

_log = logging.getLogger(__name__)

_MARK = "CLIPCD-ENGINE "
#: Runs in the engine's Python: imports what the engine needs and prints one JSON line after _MARK.
_PROBE = f"""
import json, sys
info = {{"python": sys.executable, "version": sys.version.split()[0], "missing": []}}
for name in {REQUIRED_MODULES!r}:
    try:
        __import__(name)
    except Exception as exc:
        plain = type(exc) is ModuleNotFoundError and exc.name == name
        info["missing"].append(name if plain else f"{{name}} ({{type(exc).__name__}}: {{exc}})")
if not info["missing"]:
    torch = sys.modules["torch"]
    info["torch"] = torch.__version__
    info["cuda"] = bool(torch.cuda.is_available())
    info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if info["cuda"] else []
    mps = getattr(torch.backends, "mps", None)
    info["mps"] = bool(mps is not None and mps.is_available())
print({_MARK!r} + json.dumps(info), flush=True)
"""
_PROBE_TIMEOUT = 300.0  # a first import of torch from a slow disk takes a while


@dataclass
class EngineStatus:
    """What the engine's Python can do, or why there is none and how to install it.

    Attributes:
        python: The interpreter found for the engine (None when none was found).
        ok: True when ``python`` imports torch, open_clip and rasterio.
        torch: torch's version ("2.14.1+cu128"); empty when not ok.
        cuda: Whether torch sees a CUDA GPU.
        devices: The CUDA devices' names torch sees.
        mps: Whether torch sees an Apple GPU.
        message: One line for the user: what was found, or what is missing.
        fix: The shell commands that install the engine (empty when ok).
        gpu: The NVIDIA GPU the driver reports (nvidia-smi), whatever torch can do with it.
        base_python: The Python "Install backend" would create the environment with (None: none usable).
        index_url: The PyTorch wheel index "Install backend" would use (None: PyPI).
        install_problem: Why "Install backend" cannot run here; empty when it can.
        searched: What was looked at, one line each (for the diagnostics).
    """

    python: str | None
    ok: bool
    torch: str = ""
    cuda: bool = False
    devices: tuple[str, ...] = ()
    mps: bool = False
    message: str = ""
    fix: str = ""
    gpu: installer.CudaInfo | None = None
    base_python: str | None = None
    index_url: str | None = None
    install_problem: str = ""
    searched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the dock: "Engine: <python> — torch X, CUDA: <gpu>" or the problem."""
        if not self.ok:
            return self.message
        if self.cuda:
            device = "CUDA: " + (", ".join(self.devices) or "yes")
        elif self.mps:
            device = "Apple GPU (MPS)"
        elif self.gpu is not None and self.index_url is not None and "/cu" in self.index_url:
            device = f"CPU only, though the {self.gpu.name} could be used: Reinstall backend gets its CUDA build"
        else:
            device = "CPU only"
        return f"Engine: {self.python} — torch {self.torch}, {device}"

    def device_choices(self) -> tuple[str, ...]:
        """The ``--device`` values that make sense here: always "auto" and "cpu", then what torch sees."""
        return ("auto", "cpu") + (("cuda",) if self.cuda else ()) + (("mps",) if self.mps else ())


def probe(python: str, timeout: float = _PROBE_TIMEOUT) -> dict[str, Any]:
    """Run the probe in ``python``; its JSON, or ``{"error": ...}`` when it does not run."""
    try:
        done = run_engine_python([python, "-c", _PROBE], timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"it does not run: {exc}"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                return dict(json.loads(line[len(_MARK) :]))
            except ValueError:
                break
    tail = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
    return {"error": f"it exited with code {done.returncode}: {tail.strip()}"}


def searched_pythons() -> list[str]:
    """Where the engine's Python is looked for, in order, and what was found there."""
    forced = os.environ.get(PYTHON_ENV)
    own = qgis_python()
    own_state = "not found" if own is None else (own + (" (has the engine)" if can_run_backend(own) else " (no torch)"))
    return [
        f"${PYTHON_ENV}: {forced or 'not set'}",
        f"QGIS's own Python: {own_state}",
        f"setting {SETTINGS_KEY}: {configured_python() or 'not set'}",
        f"private environment: {installed_python() or f'{installer.venv_python(installer.venv_dir())} (absent)'}",
    ]


def check_engine() -> EngineStatus:
    """Find the engine's Python and ask it what it can do (slow: run off the main thread).

    The install fields (base Python, torch index, install problem) are filled in either way, so
    "Reinstall backend" works from a working engine too; ``fix`` only when the engine is missing.
    """
    gpu = installer.detect_cuda()
    python = find_python()
    searched = searched_pythons()
    if python is not None:
        info = probe(python)
        if not info.get("error") and not info.get("missing"):
            status = EngineStatus(
                python=python,
                ok=True,
                torch=str(info.get("torch", "")),
                cuda=bool(info.get("cuda")),
                devices=tuple(str(name) for name in info.get("devices", [])),
                mps=bool(info.get("mps")),
                gpu=gpu,
                searched=searched,
            )
            return install_advice(status)
        problem = info.get("error") or "it lacks " + ", ".join(info.get("missing", []))
        message = f"⚠ The engine's Python {python} cannot run the engine: {problem}."
    else:
        message = "⚠ No Python with " + ", ".join(REQUIRED_MODULES) + " was found."
    return with_install_advice(EngineStatus(python=python, ok=False, gpu=gpu, searched=searched), message)


def install_advice(status: EngineStatus) -> EngineStatus:
    """Fill in what "Install backend" would use here: the base Python, the torch index, or why it cannot."""
    base = installer.find_base_python()
    status.base_python = base.python
    status.index_url = installer.torch_index_url(status.gpu)
    status.install_problem = base.problem
    if installer.requirements_file() is None:
        status.install_problem = "backend/requirements.txt is missing from the plugin: reinstall the plugin."
    return status


def with_install_advice(status: EngineStatus, message: str) -> EngineStatus:
    """For a missing engine: the install fields, the exact commands (``fix``) and the message ending with them."""
    install_advice(status)
    plan = installer.install_plan(
        status.base_python or "python3",
        installer.venv_dir(),
        installer.requirements_file() or Path("backend", "requirements.txt"),
        status.index_url,
    )
    status.fix = installer.command_text(plan)
    status.message = f"{message} Install it with the button below or run:"
    if status.install_problem:
        status.message = f"{message} {status.install_problem} The commands are:"
    return status


class EngineCheckTask(QgsTask):  # type: ignore[misc]
    """Runs :func:`check_engine` in the background; ``checked`` carries the :class:`EngineStatus`."""

    #: Emitted on the main thread (from ``finished``) with the EngineStatus.
    checked = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__("ClipCD: checking the engine", QgsTask.Flag.CanCancel)
        self.status: EngineStatus | None = None

    def run(self) -> bool:
        """Task thread: the check; never raises."""
        try:
            self.status = check_engine()
        except Exception as exc:
            _log.exception("engine check failed")
            self.status = EngineStatus(python=None, ok=False, message=f"⚠ The engine check failed: {exc}")
        return True

    def finished(self, result: bool) -> None:
        """Main thread: hand the status on."""
        status = self.status or EngineStatus(python=None, ok=False, message="⚠ The engine check was canceled.")
        self.checked.emit(status)
