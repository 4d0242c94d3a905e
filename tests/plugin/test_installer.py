"""The engine installer: GPU detection through a fake nvidia-smi, the plan, and real venv + pip runs (offline)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qgis_clipcd.engine import base_python, environment, installer
from qgis_clipcd.engine.installer import (
    CudaInfo,
    command_text,
    detect_cuda,
    find_base_python,
    install_plan,
    parse_nvidia_smi,
    torch_index_url,
    torch_pins,
    venv_python,
)
from qgis_clipcd.engine.pip_run import run_plan
from tests.conftest import REPO_ROOT
from tests.plugin.wheels import MODULE, tiny_requirements

BACKEND_REQUIREMENTS = REPO_ROOT / "backend" / "requirements.txt"
WHEEL = "https://download.pytorch.org/whl"


def fake_tool(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def only_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PATH", str(folder))


def fake_nvidia_smi(monkeypatch: pytest.MonkeyPatch, folder: Path, script: str) -> None:
    fake_tool(folder, "nvidia-smi", script)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


# -- the GPU and the PyTorch index ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "capability", "index"),
    [
        ("580.65.06", "8.9", "cu130"),  # CUDA 13 driver, Ada
        ("595.12", "12.0", "cu130"),  # Blackwell needs a CUDA 13 build
        ("585.1", "6.1", "cu126"),  # Pascal: only the legacy 12.6 build has its kernels
        ("575.51.03", "8.9", "cu126"),  # too old for CUDA 13; 12.x runs on >= 528 (minor-version compatibility)
        ("555.42.06", "8.6", "cu126"),
        ("530.30.02", "7.5", "cu126"),
        ("575.51.03", "12.0", "cpu"),  # Blackwell on a pre-580 driver: no 2.14 build fits
        ("520.61.05", "8.6", "cpu"),  # CUDA 11 driver
        ("470.82.01", "3.7", "cpu"),
        ("garbage", "8.9", "cpu"),
    ],
)
def test_driver_picks_the_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, driver: str, capability: str, index: str
) -> None:
    fake_nvidia_smi(monkeypatch, tmp_path / "bin", f'echo "NVIDIA GeForce RTX, {driver}, {capability}"\n')
    cuda = detect_cuda()
    assert cuda == CudaInfo("NVIDIA GeForce RTX", driver, capability, 1)
    assert torch_index_url(cuda, "linux") == f"{WHEEL}/{index}"
    assert torch_index_url(cuda, "win32") == f"{WHEEL}/{index}"


def test_the_index_table_matches_the_torch_pin() -> None:
    """torch 2.14 publishes cu126, cu130, cu132 (no cu124/cu128): re-check TORCH_INDEXES when the pin moves."""
    assert torch_pins(BACKEND_REQUIREMENTS)[0] == "torch==2.14.1", "torch pin changed: check installer.TORCH_INDEXES"
    assert set(installer.TORCH_INDEXES) <= {"cu126", "cu130", "cu132"}


def test_no_nvidia_smi_means_cpu_wheels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    only_on_path(monkeypatch, tmp_path / "empty")
    assert detect_cuda() is None
    assert torch_index_url(None, "linux") == f"{WHEEL}/cpu"
    assert torch_index_url(None, "win32") == f"{WHEEL}/cpu"
    assert torch_index_url(None, "darwin") is None  # PyPI's own macOS wheels
    assert torch_index_url(CudaInfo("x", "575.1"), "darwin") is None


def test_old_driver_without_compute_cap_is_asked_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = (
        'case "$1" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; esac\n'
        'printf "Tesla K80, 470.82.01\\nTesla K80, 470.82.01\\n"\n'
    )
    fake_nvidia_smi(monkeypatch, tmp_path / "bin", script)
    cuda = detect_cuda()
    assert cuda == CudaInfo("Tesla K80", "470.82.01", "", 2)
    assert cuda.driver_major == 470 and cuda.capability is None
    assert torch_index_url(cuda, "linux") == f"{WHEEL}/cpu"
    assert torch_index_url(CudaInfo("Tesla T4", "535.1"), "linux") == f"{WHEEL}/cu126"  # capability unknown


def test_failing_or_hanging_nvidia_smi_is_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_nvidia_smi(monkeypatch, tmp_path / "failing", 'echo "NVIDIA-SMI has failed" >&2\nexit 9\n')
    assert detect_cuda() is None
    fake_nvidia_smi(monkeypatch, tmp_path / "hanging", "sleep 30\n")
    started = time.monotonic()
    assert detect_cuda(timeout=1) is None
    assert time.monotonic() - started < 10


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("No devices were found\n") is None
    info = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 570.124.06, 9.0\nNVIDIA H100 80GB HBM3, 570.124.06, 9.0\n")
    assert info == CudaInfo("NVIDIA H100 80GB HBM3", "570.124.06", "9.0", 2)
    assert info is not None and info.driver_major == 570
    assert parse_nvidia_smi("GPU, 550.1, [N/A]") == CudaInfo("GPU", "550.1", "", 1)


# -- requirements and the plan ----------------------------------------------------------------------


def test_backend_requirements_are_the_runtime_pins() -> None:
    assert installer.requirements_file() == BACKEND_REQUIREMENTS
    assert torch_pins(BACKEND_REQUIREMENTS) == ["torch==2.14.1", "torchvision==0.29.1"]
    runtime = BACKEND_REQUIREMENTS.read_text().splitlines()
    names = {line.split("=")[0].split(">")[0].split("<")[0] for line in runtime if line and not line.startswith("#")}
    assert {"numpy", "rasterio", "torch", "torchvision", "open_clip_torch", "safetensors", "psutil"} <= names
    assert not names & {"pytest", "ruff", "mypy", "matplotlib", "pyyaml"}, "training and test tools stay in the root"
    root = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert "-r backend/requirements.txt" in root
    assert not any(line.startswith(("torch", "rasterio", "numpy")) for line in root), "pins live in one place"
    assert "backend/requirements.txt" in (REPO_ROOT / "Makefile").read_text()


def test_plan_with_a_torch_index(tmp_path: Path) -> None:
    venv = tmp_path / "my env"
    plan = install_plan("/usr/bin/python3", venv, BACKEND_REQUIREMENTS, f"{WHEEL}/cu130", windows=False)
    python = str(venv / "bin" / "python")
    assert plan == [
        ["/usr/bin/python3", "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", "--index-url", f"{WHEEL}/cu130", "torch==2.14.1", "torchvision==0.29.1"],
        [python, "-m", "pip", "install", "-r", str(BACKEND_REQUIREMENTS)],
        [python, "-c", "import torch, open_clip, rasterio"],
    ]
    assert not any("--system-site-packages" in step for step in plan)
    text = command_text(plan, windows=False)
    assert text.splitlines()[0] == f"/usr/bin/python3 -m venv '{venv}'"
    assert text.splitlines()[-1] == f"'{python}' -c 'import torch, open_clip, rasterio'"


def test_plan_on_windows_and_macos(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    plan = install_plan(r"C:\OSGeo4W\apps\Python312\python.exe", venv, BACKEND_REQUIREMENTS, None, windows=True)
    python = str(venv / "Scripts" / "python.exe")
    assert venv_python(venv, windows=True) == venv / "Scripts" / "python.exe"
    assert [step[0] for step in plan[1:]] == [python] * 3
    assert not any("--index-url" in step for step in plan)  # no index: torch comes from PyPI with the rest
    text = command_text(plan, windows=True)
    assert r"C:\OSGeo4W\apps\Python312\python.exe -m venv" in text
    assert '-c "import torch, open_clip, rasterio"' in text


def test_base_python_is_qgis_own_when_recent_enough() -> None:
    base = find_base_python()
    assert base.python == environment.qgis_python() and base.problem == ""


def test_too_old_or_venv_less_pythons_are_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(base_python, "qgis_python", lambda: str(fake_tool(tmp_path, "qgis-python", "echo 3 9 1\n")))
    folder = tmp_path / "bin"
    fake_tool(folder, "python3", "echo 3 12 0\n")
    only_on_path(monkeypatch, folder)
    base = find_base_python()
    assert base.python is None
    assert "is Python 3.9, the engine needs 3.11 or newer" in base.problem
    assert "apt install python3.12-venv" in base.problem
    fake_tool(folder, "python3.13", "echo 3 13 1\n")
    assert find_base_python().python == str(folder / "python3.13")


# -- running plans for real -------------------------------------------------------------------------


def test_real_venv_and_pip_install_offline(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    requirements = tiny_requirements(wheels)
    venv = tmp_path / "venv"
    plan = install_plan(
        sys.executable,
        venv,
        requirements,
        None,
        pip_options=["--no-index", "--find-links", str(wheels)],
        check_modules=(MODULE,),
    )
    seen: list[tuple[float, str]] = []
    result = run_plan(plan, lambda fraction, message: seen.append((fraction, message)), lambda: False)
    assert result.ok, (result.message, result.log)
    assert not result.canceled and result.failed_step == -1
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert any("Successfully installed clipcd-tiny-0.1" in message for _, message in seen)
    assert any(message.startswith("Step 4/4: Checking") for _, message in seen)
    assert any(line.startswith("$ ") and "-m venv" in line for line in result.log)
    python = venv_python(venv)
    assert subprocess.run([python, "-c", f"import {MODULE}; assert {MODULE}.VALUE == 42"], check=False).returncode == 0
    # private: QGIS's GDAL bindings (system site-packages) are not visible in the new environment
    sees_osgeo = subprocess.run([python, "-c", "import osgeo"], capture_output=True, check=False)
    assert sees_osgeo.returncode != 0


def test_cancel_stops_a_running_step_quickly(tmp_path: Path) -> None:
    marker = tmp_path / "second-step-ran"
    plan = [
        [sys.executable, "-c", "print('Collecting something', flush=True); import time; time.sleep(60)"],
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
    ]
    started = time.monotonic()
    result = run_plan(plan, lambda fraction, message: None, lambda: time.monotonic() - started > 1.0)
    assert time.monotonic() - started < 10
    assert not result.ok and result.canceled and result.failed_step == 0
    assert "canceled" in result.message.lower()
    assert "Collecting something" in result.log
    assert not marker.exists()


def test_a_failing_step_stops_the_plan_with_its_output(tmp_path: Path) -> None:
    marker = tmp_path / "second-step-ran"
    code = "import sys; print('Collecting torch'); print('ERROR: boom happened', file=sys.stderr); sys.exit(3)"
    plan = [[sys.executable, "-c", code], [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]]
    result = run_plan(plan, lambda fraction, message: None, lambda: False)
    assert not result.ok and not result.canceled and result.failed_step == 0
    assert "exit code 3" in result.message and "ERROR: boom happened" in result.message
    assert "ERROR: boom happened" in result.log
    assert not marker.exists()


def test_failures_carry_hints_and_a_missing_program_is_reported(tmp_path: Path) -> None:
    code = "print('The virtual environment was not created successfully because ensurepip is not available.'); exit(1)"
    result = run_plan([[sys.executable, "-c", code]], lambda f, m: None, lambda: False)
    assert not result.ok and "apt install python3-venv" in result.message
    missing = str(tmp_path / "no-such-python")
    result = run_plan([[missing, "-m", "venv", str(tmp_path / "v")]], lambda f, m: None, lambda: False)
    assert not result.ok and "could not start" in result.message and missing in result.message


def test_progress_callback_errors_never_escape() -> None:
    def broken(fraction: float, message: str) -> None:
        raise RuntimeError("progress sink broke")

    result = run_plan([[sys.executable, "-c", "pass"]], broken, lambda: False)
    assert not result.ok and "progress sink broke" in result.message


def test_find_python_falls_back_to_the_private_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLIPCD_PYTHON", raising=False)
    monkeypatch.setattr(environment, "qgis_python", lambda: None)
    monkeypatch.setattr(environment, "configured_python", lambda: None)
    venv = tmp_path / "venv"
    monkeypatch.setattr(environment, "venv_dir", lambda: venv)
    assert environment.find_python() is None
    python = venv_python(venv)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert environment.find_python() == str(python)
    monkeypatch.setattr(environment, "configured_python", lambda: "/configured/python")
    assert environment.find_python() == "/configured/python", "the setting wins over the default location"
