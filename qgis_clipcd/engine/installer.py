"""Installs the engine (torch, open_clip, rasterio...) into a private virtual environment.

Plain Python: no QGIS import at module level, so it can be used and tested anywhere. The plan is a
list of argument lists run one after the other by :func:`pip_run.run_plan` (re-exported here);
:func:`command_text` prints the same commands for a user to run by hand. See docs/install.md.

Bandit B404/B603 are waived below: the argument lists are fixed, never a shell.

Why the environment is private and not ``--system-site-packages``: the engine must not see QGIS's
own NumPy, GDAL or PROJ (they clash with rasterio's and torch's), and QGIS must not see the engine's.

Why two pip calls for the engine: PyTorch's wheel indexes (``download.pytorch.org/whl/<tag>``) hold
torch, torchvision and their own dependencies, not rasterio or open_clip. Installing torch first with
``--index-url <torch index> torch==X torchvision==Y`` is PyTorch's documented way and picks exactly
the build for this driver; the second call (``-r requirements.txt``, PyPI) then finds
``torch==X+cu128`` already satisfying ``torch==X`` and leaves it alone. A single call with
``--extra-index-url`` would let pip choose between PyPI's and PyTorch's builds of the same version.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess  # nosec B404
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qgis_clipcd.engine.base_python import MIN_PYTHON, BasePython, find_base_python
from qgis_clipcd.engine.environment import REQUIRED_MODULES, venv_dir, venv_python
from qgis_clipcd.engine.pip_run import InstallResult, describe, run_plan
from qgis_clipcd.metadata import backend_root

__all__ = [
    "MIN_PYTHON",
    "TORCH_INDEXES",
    "BasePython",
    "CudaInfo",
    "InstallResult",
    "command_text",
    "describe",
    "detect_cuda",
    "find_base_python",
    "install_plan",
    "parse_nvidia_smi",
    "requirements_file",
    "run_plan",
    "torch_index_url",
    "torch_pins",
    "venv_dir",
    "venv_python",
]

_log = logging.getLogger(__name__)

TORCH_WHEELS = "https://download.pytorch.org/whl"
#: PyTorch's CUDA wheel indexes for the pinned torch, preferred first: tag -> (lowest NVIDIA driver
#: major version, lowest and highest GPU compute capability the build has kernels for). A GPU that no
#: entry fits gets the CPU build. torch 2.14 publishes cu126 (legacy: Maxwell to Hopper), cu130 and
#: cu132 (Turing and newer, PTX for later GPUs) and no cu124 or cu128 (pytorch/pytorch#190355).
#: The drivers are NVIDIA's minimums with minor-version compatibility (CUDA release notes, table 2;
#: 528 covers Windows' 528.33 for 12.x). CHECK THIS TABLE AGAINST TORCH'S PUBLISHED WHEELS
#: (download.pytorch.org/whl/<tag>/torch/) WHENEVER THE TORCH PIN IN backend/requirements.txt CHANGES.
TORCH_INDEXES: dict[str, tuple[int, float, float]] = {
    "cu130": (580, 7.5, 99.0),
    "cu126": (528, 5.0, 9.0),
}
_NVIDIA_SMI_TIMEOUT = 15.0
_TORCH_FAMILY = ("torch", "torchvision")


def requirements_file() -> Path | None:
    """The engine's runtime pins, ``backend/requirements.txt`` (in a checkout and in the plugin zip)."""
    root = backend_root()
    path = root / "backend" / "requirements.txt" if root is not None else None
    return path if path is not None and path.is_file() else None


def torch_pins(requirements: Path) -> list[str]:
    """The torch and torchvision lines of ``requirements`` (e.g. ``torch==2.14.1``); empty if unreadable."""
    try:
        lines = requirements.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    pins = []
    for line in lines:
        spec = line.split("#", 1)[0].strip()
        name = re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-")
        if name in _TORCH_FAMILY:
            pins.append(spec)
    return pins


@dataclass(frozen=True)
class CudaInfo:
    """The NVIDIA GPU as the driver reports it (``nvidia-smi``), whatever torch can do with it.

    Attributes:
        name: The first GPU's name, e.g. "NVIDIA GeForce RTX 4070".
        driver: The driver version, e.g. "575.51.03".
        compute_capability: e.g. "8.9"; empty when the driver is too old to report it.
        count: How many GPUs the driver lists.
    """

    name: str
    driver: str
    compute_capability: str = ""
    count: int = 1

    @property
    def driver_major(self) -> int:
        """The driver's major version (575 for "575.51.03"); 0 when unreadable."""
        head = self.driver.split(".", 1)[0].strip()
        return int(head) if head.isdigit() else 0

    @property
    def capability(self) -> float | None:
        """The compute capability as a number (8.9); None when unknown."""
        return float(self.compute_capability) if self.compute_capability else None


def parse_nvidia_smi(text: str) -> CudaInfo | None:
    """Read ``nvidia-smi --query-gpu=name,driver_version[,compute_cap] --format=csv,noheader`` output."""
    rows = [[part.strip() for part in line.split(",")] for line in text.splitlines() if line.strip()]
    rows = [row for row in rows if len(row) >= 2 and row[0] and row[1]]
    if not rows:
        return None
    first = rows[0]
    capability = first[2] if len(first) > 2 and re.fullmatch(r"\d+\.\d+", first[2]) else ""
    return CudaInfo(name=first[0], driver=first[1], compute_capability=capability, count=len(rows))


def detect_cuda(timeout: float = _NVIDIA_SMI_TIMEOUT) -> CudaInfo | None:
    """The NVIDIA GPU from ``nvidia-smi`` on PATH; None without one (or when it fails or hangs)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    # Drivers before ~510 do not know the compute_cap field: ask again without it.
    for fields in ("name,driver_version,compute_cap", "name,driver_version"):
        try:
            done = subprocess.run(  # nosec B603
                [exe, f"--query-gpu={fields}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            _log.info("nvidia-smi failed: %s", exc)
            return None
        if done.returncode == 0:
            return parse_nvidia_smi(done.stdout)
    return None


def torch_index_url(cuda: CudaInfo | None, platform: str | None = None) -> str | None:
    """The PyTorch wheel index for this machine; None means PyPI's default torch (macOS).

    The first :data:`TORCH_INDEXES` entry whose driver minimum and compute capabilities fit the GPU
    gets its CUDA build; no NVIDIA GPU, or none fitting, gets the CPU build (on Linux PyPI's default
    torch would pull some 3 GB of CUDA libraries that might not even run).
    """
    platform = sys.platform if platform is None else platform
    if platform == "darwin":  # PyPI's macOS wheels are the only ones (CPU + Apple GPU through MPS)
        return None
    if cuda is not None:
        capability = cuda.capability
        for tag, (driver, lowest, highest) in TORCH_INDEXES.items():
            if cuda.driver_major >= driver and (capability is None or lowest <= capability <= highest):
                return f"{TORCH_WHEELS}/{tag}"
    return f"{TORCH_WHEELS}/cpu"


def install_plan(
    base_python: str,
    venv: Path,
    requirements: Path,
    index_url: str | None,
    *,
    pip_options: Sequence[str] = (),
    check_modules: Sequence[str] = REQUIRED_MODULES,
    windows: bool | None = None,
) -> list[list[str]]:
    """The commands that install the engine into ``venv`` (see the module docstring for the why).

    Args:
        base_python: The interpreter that creates the environment (Python >= 3.11 with ``venv``).
        venv: The environment's folder (created; an existing one is reused and completed).
        requirements: The pins (``backend/requirements.txt``).
        index_url: PyTorch's index for torch and torchvision; None installs them from PyPI with the rest.
        pip_options: Added to every pip call (e.g. ``--no-index --find-links <folder>`` for offline wheels).
        check_modules: What the last step imports to prove the environment works.
        windows: Lay out the environment as on Windows (default: this machine).
    """
    python = str(venv_python(venv, windows))
    pip = [python, "-m", "pip", "install"]
    plan = [[base_python, "-m", "venv", str(venv)], [*pip, "--upgrade", "pip", *pip_options]]
    pins = torch_pins(requirements)
    if index_url and pins:
        plan.append([*pip, "--index-url", index_url, *pins, *pip_options])
    plan.append([*pip, "-r", str(requirements), *pip_options])
    plan.append([python, "-c", "import " + ", ".join(check_modules)])
    return plan


def command_text(plan: Sequence[Sequence[str]], windows: bool | None = None) -> str:
    """The plan as shell commands, one a line, quoted for this system's shell (cmd.exe on Windows)."""
    on_windows = sys.platform == "win32" if windows is None else windows
    quote = subprocess.list2cmdline if on_windows else shlex.join
    return "\n".join(quote(list(step)) for step in plan)
