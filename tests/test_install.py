"""``pip install .`` gives a ``clipcd`` command that works from any folder and finds the shipped models."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.rasters import utm_transform, write_raster

#: What the build reads: the packages, the models, the metadata and the requirement files.
SOURCES = ("backend", "training", "resources/models", "pyproject.toml", "README.md", "tests/requirements.txt")


def _copy_sources(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.partial")
    for name in SOURCES:
        source, dest = REPO_ROOT / name, target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=ignore)
        else:
            shutil.copy2(source, dest)
    return target


def test_the_package_list_covers_every_package_of_the_tree() -> None:
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(REPO_ROOT).parts)
        for top in ("backend", "training")
        for path in (REPO_ROOT / top).rglob("__init__.py")
    }
    assert listed == found | {"backend._shipped_models"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install .`` of a copy of the checkout.

    The engine's heavy dependencies (and pip and setuptools) come from this test's environment
    through a .pth file, so nothing is downloaded (``--no-index``) and torch is not reinstalled.
    """
    root = tmp_path_factory.mktemp("install")
    source = _copy_sources(root / "src")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    (site_packages / "engine-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
         "--no-build-isolation", str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def _run(venv: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, check=False)


def test_clipcd_runs_from_another_folder_with_the_installed_models(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clipcd = installed / "bin" / "clipcd"
    where = _run(
        installed, installed / "bin" / "python", "-c", "import backend; print(backend.__file__)", cwd=elsewhere
    )
    assert where.stdout.strip().startswith(str(installed)), where.stdout + where.stderr
    models = _run(installed, clipcd, "models", cwd=elsewhere)
    assert models.returncode == 0, models.stderr
    shipped = next((installed / "lib").glob("python3*/site-packages/backend/_shipped_models"))
    assert f"shipped model files ({shipped})" in models.stdout and "clipcd-s2.safetensors" in models.stdout
    before = np.full((3, 96, 96), 60, dtype=np.uint8)
    after = before.copy()
    after[:, 30:60, 30:60] = 240
    pair = [
        write_raster(elsewhere / f"{n}.tif", a, transform=utm_transform(res=0.5))
        for n, a in (("a", before), ("b", after))
    ]
    detect = _run(installed, clipcd, "detect", "--before", pair[0], "--after", pair[1], "--out", "out", cwd=elsewhere)
    assert detect.returncode == 0, detect.stderr
    assert "model: clipcd-default.safetensors" in detect.stderr and (elsewhere / "out" / "changes.gpkg").is_file()
    for command in (("doctor",), ("clip", "list"), ("info",), ("batch", "--help")):
        ran = _run(installed, clipcd, *command, cwd=elsewhere)
        assert ran.returncode == 0, f"clipcd {' '.join(command)}: {ran.stderr}"
    module = _run(installed, installed / "bin" / "python", "-m", "backend", "--version", cwd=elsewhere)
    assert module.returncode == 0 and module.stdout.startswith("clipcd "), module.stderr  # python -m backend too
