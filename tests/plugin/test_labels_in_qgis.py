"""CLIP labels through the plugin: the dock and Processing give the CLI's polygons and labels; qgis_process PROMPTS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.clip.manage import add
from tests.clip.conftest import tiny_arch, tiny_clip
from tests.conftest import REPO_ROOT
from tests.labels.colour_clip import colour_pair
from tests.plugin.helpers import run_dock
from tests.plugin.test_processing import release

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis
__all__ = ["tiny_arch", "tiny_clip"]  # fixtures


def labelled(path: str | Path) -> list[tuple[str, str, str]]:
    """(geometry as WKT to the centimetre, label, after class) of every polygon, sorted."""
    layer = qgis_core.QgsVectorLayer(str(path), "changes", "ogr")
    assert layer.isValid(), path
    return sorted((f.geometry().asWkt(2), str(f["label"]), str(f["class_after"])) for f in layer.getFeatures())


def cli(before: Path, after: Path, out: Path, *extra: str) -> Path:
    """Run ``detect`` as the command line does; the GeoPackage it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "backend", "detect", "--before", str(before), "--after", str(after), "--out", str(out),
         "--threshold", "0.01", "--device", "cpu", *extra],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out / "changes.gpkg"


@pytest.fixture
def pair(tmp_path: Path, tiny_clip: Path, tiny_arch: Path) -> tuple[Path, Path]:
    """The colour pair, with a tiny random CLIP registered: every run is labelled."""
    add(tiny_clip, str(tiny_arch), "tiny-clip")
    return colour_pair(tmp_path / "pair")


def test_the_dock_and_processing_label_like_the_cli(
    pair: tuple[Path, Path], tmp_path: Path, provider: object, qgis_iface: object, qgis_new_project: None
) -> None:
    import processing

    before, after = pair
    expected = labelled(cli(before, after, tmp_path / "cli"))
    assert expected and all(label for _, label, _ in expected)
    result = processing.run(
        "clipcd:detect_change",
        {"BEFORE": str(before), "AFTER": str(after), "THRESHOLD": 0.01, "DEVICE": "cpu",
         "OUTPUT_POLYGONS": str(tmp_path / "processing.gpkg")},
    )  # fmt: skip
    assert labelled(result["OUTPUT_POLYGONS"]) == expected

    dock = run_dock(qgis_iface, before, after, tmp_path / "dock.gpkg", threshold=0.01)
    assert labelled(tmp_path / "dock.gpkg") == expected
    assert "; labels by tiny-clip: " in dock.status.text(), dock.status.text()
    project_layers = qgis_core.QgsProject.instance().mapLayers().values()
    (changes,) = [layer for layer in project_layers if isinstance(layer, qgis_core.QgsVectorLayer)]
    assert isinstance(changes.renderer(), qgis_core.QgsCategorizedSymbolRenderer)
    assert changes.renderer().classAttribute() == "label"
    release(dock)


@pytest.mark.slow
def test_qgis_process_keeps_what_the_prompts_ask_for(pair: tuple[Path, Path], tmp_path: Path) -> None:
    qgis_process = shutil.which("qgis_process.bin")
    if qgis_process is None:
        pytest.skip("qgis_process.bin is not installed")
    before, after = pair
    everything = labelled(cli(before, after, tmp_path / "cli"))
    prompt = everything[0][2]  # an after class the tiny CLIP gave: the prompt keeps exactly those polygons
    plugin = tmp_path / "plugins" / "qgis_clipcd"  # the packaged layout, linked to the checkout
    plugin.mkdir(parents=True)
    for item in (REPO_ROOT / "qgis_clipcd").iterdir():
        if item.name != "__pycache__":
            (plugin / item.name).symlink_to(item)
    for name in ("metadata.txt", "resources", "backend"):
        (plugin / name).symlink_to(REPO_ROOT / name)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "QGIS_PLUGINPATH": str(plugin.parent),
           "QT_QPA_PLATFORM": "offscreen", "CLIPCD_PYTHON": sys.executable}  # fmt: skip
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    kept_file = tmp_path / "kept.gpkg"
    for args in (
        ["plugins", "enable", "qgis_clipcd"],
        ["run", "clipcd:detect_change", "--", f"BEFORE={before}", f"AFTER={after}", "THRESHOLD=0.01", "DEVICE=cpu",
         f"PROMPTS={prompt}", "PROMPT_MATCH=appeared", f"OUTPUT_POLYGONS={kept_file}"],
    ):  # fmt: skip
        done = subprocess.run([qgis_process, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    kept = labelled(kept_file)
    assert kept == [row for row in everything if row[2] == prompt] and 0 < len(kept) <= len(everything)
