"""The Python that creates the engine's private environment: recent enough, and able to make venvs.

QGIS's own interpreter comes first (on Windows OSGeo4W and the standalone installer it is
``apps/Python3xx/python.exe``; on macOS ``python3`` inside QGIS.app); when it is too old, the
newest suitable ``python3.x`` on PATH or in the usual install folders is used. Plain Python.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404
import sys
from dataclasses import dataclass
from pathlib import Path

from qgis_clipcd.engine.environment import clean_env, qgis_python

#: The oldest Python the engine runs on (backend/ uses typing.Self and ``match``).
MIN_PYTHON = (3, 11)
_NAMES = ("python3.14", "python3.13", "python3.12", "python3.11", "python3", "python")
_PROBE = "import sys, importlib.util as u; print(*sys.version_info[:2], int(u.find_spec('ensurepip') is not None))"


@dataclass(frozen=True)
class BasePython:
    """The interpreter that creates the environment, or why there is none.

    Attributes:
        python: Its path; None when no usable one was found.
        problem: Empty when ``python`` is usable; else what is wrong and how to fix it.
    """

    python: str | None
    problem: str = ""


def _usual_places() -> list[str]:
    """Interpreters installed where a GUI-started QGIS's PATH does not look (python.org, Homebrew)."""
    if sys.platform == "darwin":
        folders = [Path("/opt/homebrew/bin"), Path("/usr/local/bin")]
        folders += sorted(Path("/Library/Frameworks/Python.framework/Versions").glob("3.*/bin"), reverse=True)
        return [str(folder / name) for folder in folders for name in _NAMES[:-1] if (folder / name).is_file()]
    if sys.platform == "win32":
        roots = [
            Path(os.environ.get("LOCALAPPDATA", "")) / "Programs" / "Python",
            Path(os.environ.get("PROGRAMFILES", "")),
        ]
        found = [path for root in roots if root.parts for path in root.glob("Python3*/python.exe")]
        return [str(path) for path in sorted(found, key=lambda p: _version_key(p.parent.name), reverse=True)]
    return []


def _version_key(folder: str) -> int:
    digits = "".join(ch for ch in folder if ch.isdigit())
    return int(digits[1:] or 0) if digits.startswith("3") else 0


def _probe(python: str) -> tuple[tuple[int, int], bool] | None:
    """(major, minor) and whether ``python -m venv`` can install pip; None when it does not run."""
    try:
        done = subprocess.run(  # nosec B603
            [python, "-c", _PROBE], env=clean_env(), capture_output=True, text=True, timeout=30, check=False
        )
        major, minor, has_ensurepip = (int(part) for part in done.stdout.split())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return ((major, minor), bool(has_ensurepip)) if done.returncode == 0 else None


def find_base_python() -> BasePython:
    """QGIS's own Python when it is recent enough; else the newest suitable one on PATH or in the usual places."""
    candidates = [qgis_python(), *(shutil.which(name) for name in _NAMES), *_usual_places()]
    problems: list[str] = []
    wanted = ".".join(map(str, MIN_PYTHON))
    for python in dict.fromkeys(c for c in candidates if c):
        probe = _probe(python)
        if probe is None:
            continue
        version, has_ensurepip = probe
        if version < MIN_PYTHON:
            problems.append(f"{python} is Python {version[0]}.{version[1]}, the engine needs {wanted} or newer")
        elif not has_ensurepip:
            problems.append(
                f"{python} cannot create virtual environments (no ensurepip); "
                f"on Debian/Ubuntu: sudo apt install python{version[0]}.{version[1]}-venv"
            )
        else:
            return BasePython(python)
    problems = problems or ["no Python interpreter was found beside QGIS or on PATH"]
    return BasePython(
        None,
        "Cannot create the engine's environment: "
        + "; ".join(problems)
        + f". Install Python {wanted} or newer (python.org, or your system's packages) and run the commands "
        "in docs/install.md with it, or point the setting clipcd/python (or $CLIPCD_PYTHON) at a Python "
        "that has torch, open_clip and rasterio.",
    )
