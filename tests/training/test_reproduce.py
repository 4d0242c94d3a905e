"""training.reproduce on generated run.json files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from training.evaluation.reproduce import PAPER, build_table, main, read_runs


def _run(root: Path, name: str, model: str, dataset: str, iou: float, mtime: float | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    scores = {"oa": 0.99, "iou": iou, "f1": 2 * iou / (1 + iou), "precision": 0.9, "recall": 0.8}
    path = folder / "run.json"
    path.write_text(
        json.dumps({"name": name, "model": model, "dataset": dataset, "protocol": "changeclip-merge", "test": scores})
    )
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_table_places_runs_beside_the_paper(tmp_path: Path, capsys) -> None:
    _run(tmp_path, "rn50-levir", "changeclip-rn50", "levir-cd", 0.8412)
    _run(tmp_path, "vit-cdd", "changeclip-vit-b16", "cdd", 0.95, mtime=1_000)
    _run(tmp_path, "vit-cdd-newer", "changeclip-vit-b16", "cdd", 0.96, mtime=2_000)
    _run(tmp_path, "lite", "changeclip-lite0", "levir-cd", 0.7)  # not a paper row: left out
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{oops")
    assert main(["--runs", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    rn50 = lines["ChangeCLIP RN50 (ours)"]
    assert "84.12 / 91.38" in rn50 and rn50.count("— / —") == 4  # f1 = 2 * 0.8412 / 1.8412
    vit = lines["ChangeCLIP ViT-B/16 (ours)"]
    assert "96.00 / 97.96" in vit and "95.00" not in vit  # the newest run of a cell wins
    paper = lines["ChangeCLIP (paper)"]
    for figure in ("85.20 / 92.01", "75.63 / —", "90.15 / —", "95.87 / 97.89", "71.41 / —"):
        assert figure in paper
    assert "99.20 / 85.20 / 92.01 / 93.40 / 90.67" in text
    assert "RN50 LEVIR-CD: run rn50-levir, protocol changeclip-merge" in text


def test_json_and_empty_runs(tmp_path: Path, capsys) -> None:
    assert main(["--runs", str(tmp_path), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["rows"] == {"RN50": {}, "ViT-B/16": {}} and table["paper"] == PAPER
    assert main(["--runs", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_read_runs_skips_runs_without_test_scores(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"name": "r", "model": "changeclip-rn50"}))
    assert read_runs(tmp_path) == []
    assert build_table([])["rows"]["RN50"] == {}
