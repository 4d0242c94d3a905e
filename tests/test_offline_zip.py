"""The offline plugin zip: the shipped models inside, under 20 MB, every model loads, and QGIS runs with no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backend.model import load_model
from tests.conftest import REPO_ROOT
from tests.plugin import write_pair
from tools.package_plugin import OFFLINE_MAX_BYTES, PackageError, build, validate

TOP = "qgis_clipcd"
SHIPPED = sorted(p.name for p in (REPO_ROOT / "resources" / "models").glob("*.safetensors"))


@pytest.fixture(scope="module")
def offline_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("dist"), offline=True).path


def test_the_offline_zip_holds_every_shipped_model_and_stays_small(offline_zip: Path, tmp_path: Path) -> None:
    assert offline_zip.name.endswith("-offline.zip")
    assert offline_zip.stat().st_size < OFFLINE_MAX_BYTES
    with zipfile.ZipFile(offline_zip) as zf:
        names = zf.namelist()
        models = sorted(n.rsplit("/", 1)[1] for n in names if n.endswith(".safetensors"))
        zf.extractall(tmp_path)
    assert models == SHIPPED and "clipcd-default.safetensors" in models
    for name in models:  # each loads safely (safetensors only) and says what it fits
        _, card = load_model(tmp_path / TOP / "resources" / "models" / name)
        assert card.pixel_size_range_m is not None and len(card.bands) == 3 and card.input_stretch


def test_binaries_stay_out_of_the_plugins_zip(offline_zip: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "qgis_clipcd-0.0.0.zip"
    shutil.copy(offline_zip, renamed)
    with pytest.raises(PackageError, match=r"\.safetensors is not an allowed text file type"):
        validate(renamed)  # the plugins.qgis.org rules: no binaries
    validate(renamed, offline=True)


def test_a_fresh_profile_runs_detect_change_with_no_network(offline_zip: Path, tmp_path: Path) -> None:
    qgis_process = shutil.which("qgis_process.bin")
    if qgis_process is None:
        pytest.skip("qgis_process.bin is not installed")
    with zipfile.ZipFile(offline_zip) as zf:
        zf.extractall(tmp_path / "plugins")
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH")
        },
        "HOME": str(tmp_path / "home"),  # a fresh profile: no model downloaded before
        "QGIS_PLUGINPATH": str(tmp_path / "plugins"),
        "QT_QPA_PLATFORM": "offscreen",
        "CLIPCD_PYTHON": sys.executable,
        "CLIPCD_MODEL_URL": "http://127.0.0.1:9/clipcd-default.safetensors",  # a closed port: no network
    }

    def qgis(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [qgis_process, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )

    assert qgis("plugins", "enable", TOP).returncode == 0
    before, after = write_pair(tmp_path / "pair")
    target = tmp_path / "changes.gpkg"
    done = qgis("run", "clipcd:detect_change", "--", f"BEFORE={before}", f"AFTER={after}", "DEVICE=cpu",
                f"OUTPUT_POLYGONS={target}")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert target.is_file() and "Downloading" not in done.stdout + done.stderr
    assert str(tmp_path / "plugins" / TOP / "resources" / "models") in done.stdout + done.stderr
