"""training.evaluation.sparse: scores over sparse change / unchanged samples, as detect reads the pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from backend.errors import InputError
from backend.model.factory import create_model
from backend.model.modelfile import build_card, save_model
from tests.rasters import write_raster
from training.evaluation import sparse

SIZE = 96


def _samples(path: Path, marked: np.ndarray) -> None:
    profile = {"driver": "BMP", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.where(marked, 255, 0).astype(np.uint8), 1)


@pytest.fixture
def pair(tmp_path: Path) -> Path:
    """A 96 x 96 pair whose after date has a bright square; samples inside it are change."""
    folder = tmp_path / "city"
    folder.mkdir()
    before = np.full((3, SIZE, SIZE), 60, dtype=np.uint8)
    after = before.copy()
    after[:, 20:50, 20:50] = 220
    write_raster(folder / "2000.tif", before)
    write_raster(folder / "2003.tif", after)
    (folder / "2000.tif.aux.xml").write_text("<PAMDataset/>", encoding="utf-8")
    rows, cols = np.mgrid[:SIZE, :SIZE]
    change = (rows >= 25) & (rows < 45) & (cols >= 25) & (cols < 45)
    unchanged = (rows >= 60) & (cols >= 60)
    _samples(folder / "change.bmp", change)
    _samples(folder / "unchanged.bmp", unchanged)
    return folder


def test_the_pair_is_the_two_rasters_in_name_order_and_the_samples_the_target(pair: Path) -> None:
    assert [p.name for p in sparse.pair_files(pair)] == ["2000.tif", "2003.tif"]
    target = sparse.reference(pair)
    assert (target == 1).sum() == 20 * 20 and (target == 0).sum() == 36 * 36
    assert set(np.unique(target).tolist()) == {0, 1, 255}


def test_the_colour_difference_finds_the_square_and_only_labelled_pixels_count(pair: Path) -> None:
    report = sparse.score_pair(pair, [], None)
    assert report["change_samples"] == 400 and report["unchanged_samples"] == 36 * 36
    best = report["scores"]["colour difference"]["best"]
    assert best["f1"] == 1.0 and best["tp"] + best["fp"] + best["fn"] + best["tn"] == 400 + 36 * 36


def test_a_model_is_scored_at_its_card_threshold_and_the_cli_writes_the_report(
    pair: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = create_model("siamese-lite0")
    path = tmp_path / "random.safetensors"
    save_model(model, build_card(model, threshold=0.35), path)
    out = tmp_path / "report.json"
    code = sparse.main([str(pair), "--model", str(path), "--bands", "1,2,3", "--out", str(out)])
    assert code == 0
    scores = json.loads(out.read_text(encoding="utf-8"))[0]["scores"]["random.safetensors"]
    assert scores["card"]["threshold"] == 0.35
    assert sum(scores["card"][k] for k in ("tp", "fp", "fn", "tn")) == 400 + 36 * 36
    assert "random.safetensors" in capsys.readouterr().out


def test_a_folder_without_samples_or_with_three_rasters_is_refused(pair: Path) -> None:
    write_raster(pair / "2005.tif", np.zeros((3, SIZE, SIZE), dtype=np.uint8))
    with pytest.raises(InputError, match=r"exactly two rasters.*2005.tif"):
        sparse.pair_files(pair)
    (pair / "unchanged.bmp").unlink()
    with pytest.raises(InputError, match=r"unchanged\.bmp"):
        sparse.pair_files(pair)
