"""The pick by pixel size: the engine's rule and the plugin's restatement agree; CLI, dock and Processing use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.inference.model_pick import pick_model, shipped_models
from backend.model.modelfile import CARD_KEY, read_card
from tests.conftest import REPO_ROOT
from tests.rasters import utm_transform, write_raster

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.models.choice import choose_model, local_models, pick  # noqa: E402

SHIPPED = REPO_ROOT / "resources" / "models"
AERIAL, S2, MEDIUM = "clipcd-default.safetensors", "clipcd-s2.safetensors", "medium.safetensors"


def card_file(path: Path, span: list[float] | None) -> Path:
    """A model file holding only a card (the pick reads cards, never tensors)."""
    card = json.loads(read_card(SHIPPED / AERIAL).to_json())
    card["pixel_size_range_m"] = span
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "clipcd", CARD_KEY: json.dumps(card)})
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    card_file(models / AERIAL, [0.3, 1.5])
    card_file(models / "medium.safetensors", [10.0, 10.0])
    card_file(models / "old.safetensors", None)
    return models


@pytest.mark.parametrize(
    ("size", "expected", "inside"),
    [((0.5, 0.5), AERIAL, True), ((10.0, 10.0), MEDIUM, True), ((8.46, 12.8), MEDIUM, False),
     ((30.0, 30.0), MEDIUM, False), ((3.0, 3.0), AERIAL, False), (None, AERIAL, True)],
)  # fmt: skip
def test_engine_and_plugin_pick_the_same(
    folder: Path, size: tuple[float, float] | None, expected: str, inside: bool
) -> None:
    engine = pick_model(size, shipped_models(folder))
    plugin = pick(size, local_models(folder))
    assert engine is not None and plugin is not None
    assert engine.path.name == plugin[0].name == expected
    assert engine.inside is plugin[2] is inside
    assert engine.reason == plugin[1]


def test_a_chosen_file_wins_and_no_local_model_falls_back_to_the_default(tmp_path: Path, folder: Path) -> None:
    assert choose_model("/my/model.safetensors", (10.0, 10.0), folder).path == "/my/model.safetensors"
    picked = choose_model(None, (10.0, 10.0), folder)
    assert Path(picked.path).name == "medium.safetensors" and "inside medium.safetensors's range" in picked.reason
    empty = tmp_path / "empty"
    empty.mkdir()
    fallback = choose_model(None, (10.0, 10.0), empty)
    assert Path(fallback.path).name == AERIAL


def run_detect(tmp_path: Path, res: float, *extra: str) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    folder = tmp_path / f"r{res}"
    folder.mkdir()
    a = write_raster(folder / "a.tif", image, transform=utm_transform(res=res))
    b = write_raster(folder / "b.tif", image[::-1].copy(), transform=utm_transform(res=res))
    done = subprocess.run(
        [sys.executable, "-m", "backend", "detect", "--before", a, "--after", b, "--out", folder / "out",
         "--json-progress", *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(not (SHIPPED / S2).is_file(), reason="the 10 m model is not shipped in this checkout")
@pytest.mark.parametrize(("res", "expected"), [(0.5, AERIAL), (3.0, AERIAL), (10.0, S2), (30.0, S2)])
def test_the_cli_picks_by_pixel_size_and_logs_why(tmp_path: Path, res: float, expected: str) -> None:
    events = run_detect(tmp_path, res)
    logs = [str(e["message"]) for e in events if e["event"] == "log"]
    assert any(f"model: {expected}, picked because the pixels are" in m for m in logs), logs
    done = events[-1]
    assert done["event"] == "done" and str(done["model"]).startswith(expected)
    warned = [e for e in events if e["event"] == "log" and e["level"] == "WARNING"]
    assert bool(warned) is (res in (3.0, 30.0))
    plugin = choose_model(None, (res, res))
    assert Path(plugin.path).name == expected


@pytest.mark.skipif(not (SHIPPED / S2).is_file(), reason="the 10 m model is not shipped in this checkout")
def test_model_overrides_the_pick(tmp_path: Path) -> None:
    events = run_detect(tmp_path, 10.0, "--model", str(SHIPPED / AERIAL))
    assert str(events[-1]["model"]).startswith(AERIAL)
    assert not [e for e in events if e["event"] == "log" and "picked because" in str(e["message"])]


@pytest.mark.skipif(not (SHIPPED / S2).is_file(), reason="the 10 m model is not shipped in this checkout")
def test_the_dock_and_processing_show_and_use_the_pick(
    tmp_path: Path, provider: object, qgis_iface, qgis_new_project: None
) -> None:
    from qgis_clipcd.dock.widget import ClipCDDock
    from qgis_clipcd.processing_provider.algorithm import DetectChangeAlgorithm

    paths = {}
    for res in (0.5, 10.0):
        image = np.full((3, 32, 32), 90, dtype=np.uint8)
        paths[res] = write_raster(tmp_path / f"r{res}.tif", image, transform=utm_transform(res=res))
    layers = {res: qgis_core.QgsRasterLayer(str(path), f"r{res}") for res, path in paths.items()}
    qgis_core.QgsProject.instance().addMapLayers(list(layers.values()))
    qgis_core.QgsSettings().remove("clipcd/model")
    dock = ClipCDDock(qgis_iface, check_engine=False)
    for res, expected in ((10.0, S2), (0.5, AERIAL)):
        dock.form.before.setLayer(layers[res])
        dock.form.after.setLayer(layers[res])
        assert dock.form.model_pick.text().startswith(f"{expected}: the pixels are"), dock.form.model_pick.text()
        assert Path(dock.form.choice().path).name == expected
        registry = qgis_core.QgsApplication.processingRegistry()
        algorithm = registry.createAlgorithmById("clipcd:detect_change")
        assert isinstance(algorithm, DetectChangeAlgorithm)
        context = qgis_core.QgsProcessingContext()
        context.setProject(qgis_core.QgsProject.instance())
        algorithm.prepareAlgorithm(
            {"BEFORE": str(paths[res]), "AFTER": str(paths[res])}, context, qgis_core.QgsProcessingFeedback()
        )
        assert algorithm._failure == ""
        assert Path(str(algorithm._prepared.params.model)).name == expected
    dock.form.model.setFilePath(str(SHIPPED / AERIAL))  # a chosen file wins and hides the pick
    dock.form.before.setLayer(layers[10.0])
    assert dock.form.model_pick.isHidden() and Path(dock.form.choice().path).name == AERIAL
    dock.deleteLater()
