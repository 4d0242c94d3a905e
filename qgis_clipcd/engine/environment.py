"""Which Python runs the engine, and the environment it runs in.

One module for the interpreter facts that the worker, the installer, the pip runner and the
engine check share: QGIS's own interpreter, the one set in the plugin's settings or in
``$CLIPCD_PYTHON``, the private environment that "Install backend" makes, the modules the engine
needs, and the environment a child process gets (without QGIS's Python and GDAL/PROJ settings).
Plain Python: QGIS is imported only inside the functions that read its settings or profile.
"""

from __future__ import annotations

import logging
import os
import subprocess  # nosec B404
import sys
from functools import lru_cache
from pathlib import Path

from qgis_clipcd.metadata import backend_root

_log = logging.getLogger(__name__)

SETTINGS_KEY = "clipcd/python"
PYTHON_ENV = "CLIPCD_PYTHON"
REQUIRED_MODULES = ("torch", "open_clip", "rasterio")
_DROPPED = ("PYTHONPATH", "PYTHONHOME")
_DROPPED_PREFIXES = ("PROJ_", "GDAL_")


def clean_env() -> dict[str, str]:
    """Our environment without QGIS's Python (PYTHONPATH, PYTHONHOME) and GDAL/PROJ settings."""
    return {
        key: value for key, value in os.environ.items() if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }


def worker_env() -> dict[str, str]:
    """The worker's environment: ours without QGIS's Python and GDAL/PROJ settings, backend on PYTHONPATH.

    It also names the QGIS profile (``$CLIPCD_QGIS_PROFILE``): the engine keeps the CLIP weights the
    plugin fetches in ``<profile>/clipcd/clip`` and still finds those of the command line.
    """
    env = clean_env()
    root = backend_root()
    if root is not None:
        env["PYTHONPATH"] = str(root)
    profile = _qgis_profile()
    if profile:
        env.setdefault("CLIPCD_QGIS_PROFILE", profile)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _qgis_profile() -> str | None:
    """The running QGIS profile's folder (None outside QGIS)."""
    try:
        from qgis.core import QgsApplication
    except ImportError:
        return None
    return str(QgsApplication.qgisSettingsDirPath() or "") or None


def qgis_python() -> str | None:
    """The Python interpreter QGIS itself runs on, when one can be found.

    Embedded in QGIS, ``sys.executable`` is a guess Python makes from PATH (on a machine with pyenv
    it is pyenv's shim, another Python), so the interpreter beside the running one's library
    (``sys.exec_prefix``) comes first.
    """
    prefix = Path(sys.exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        prefix / "bin" / f"python{version}",
        prefix / "bin" / "python3",
        prefix / "python.exe",
        prefix / "python3.exe",
    ]
    if sys.platform == "darwin":  # sys.executable is QGIS.app/Contents/MacOS/QGIS; some builds put python beside it
        candidates += [Path(sys.executable).with_name("python3"), Path(sys.executable).with_name("python")]
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(Path(sys.executable))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def run_engine_python(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (an engine interpreter and its arguments) in the worker's environment; text output.

    Raises:
        OSError: it could not start.
        subprocess.SubprocessError: it ran past ``timeout`` seconds.
    """
    return subprocess.run(  # nosec B603
        argv,
        cwd=backend_root(),
        env=worker_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )


@lru_cache(maxsize=8)
def can_run_backend(python: str) -> bool:
    """Whether ``python`` can import the engine's heavy dependencies (checked once per interpreter)."""
    code = "import " + ", ".join(REQUIRED_MODULES)
    try:
        done = run_engine_python([python, "-c", code], timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        _log.info("python %s cannot run the backend: %s", python, exc)
        return False
    return done.returncode == 0


def configured_python() -> str | None:
    """The interpreter set in the plugin's settings (QgsSettings ``clipcd/python``), if any."""
    try:
        from qgis.core import QgsSettings
    except ImportError:  # outside QGIS
        return None
    value = QgsSettings().value(SETTINGS_KEY, "")
    return str(value) if value else None


def find_python() -> str | None:
    """The interpreter that runs the backend worker, or None when there is none yet.

    ``$CLIPCD_PYTHON`` when set (for headless runs: qgis_process, CI); else QGIS's own interpreter
    if it can import torch, open_clip and rasterio; else the one set in the plugin's settings; else
    the private environment that "Install backend" makes, when it exists (see installer.py).
    """
    forced = os.environ.get(PYTHON_ENV)
    if forced:
        return forced
    own = qgis_python()
    if own is not None and can_run_backend(own):
        return own
    return configured_python() or installed_python()


def installed_python() -> str | None:
    """The interpreter of the private environment "Install backend" makes, if it exists."""
    python = venv_python(venv_dir())
    return str(python) if python.is_file() else None


def venv_dir() -> Path:
    """Where "Install backend" puts the environment: ``<QGIS profile>/clipcd/venv``, else ``~/.clipcd/venv``."""
    try:
        from qgis.core import QgsApplication

        profile = QgsApplication.qgisSettingsDirPath()
    except ImportError:  # outside QGIS
        profile = ""
    return Path(profile) / "clipcd" / "venv" if profile else Path.home() / ".clipcd" / "venv"


def venv_python(venv: Path, windows: bool | None = None) -> Path:
    """The interpreter of the environment ``venv``: ``bin/python``, or ``Scripts/python.exe`` on Windows."""
    on_windows = sys.platform == "win32" if windows is None else windows
    return venv / "Scripts" / "python.exe" if on_windows else venv / "bin" / "python"
