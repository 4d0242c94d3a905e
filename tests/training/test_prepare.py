"""python -m training.prepare: tiles on disk, the index, idempotence, and reading the tiles back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training import fakedata
from training.data.imageio import read_image, read_label
from training.data.prepare import main
from training.data.tiles import merge_and
from training.datasets import get_dataset

SIZE = 300  # -> 2 x 2 tiles of 256 at stride 192


@pytest.fixture(scope="module")
def levir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("levir")
    fakedata.make_levircd(root, {"train": 2, "val": 1, "test": 1}, size=SIZE)
    return root


def _state(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_cuts_every_split(levir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles"
    assert main(["--dataset", "levir-cd", "--data-root", str(levir), "--out", str(out)]) == 0
    assert "4 images: 48 tiles written, 0 unchanged" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train" / "A").iterdir())[:4] == [
        "train_1_0_0.png",
        "train_1_0_1.png",
        "train_1_1_0.png",
        "train_1_1_1.png",
    ]
    label = read_image(out / "test" / "label" / "test_1_1_1.png")
    assert label.shape == (1, 256, 256) and set(np.unique(label).tolist()) <= {0, 255}

    index = json.loads((out / "index.json").read_text())
    assert index["protocol"]["tile"] == 256 and index["protocol"]["stride"] == 192
    assert index["splits"] == ["train", "val", "test"]
    first = index["images"][0]
    assert first["source"] == {
        "A": "train/A/train_1.png",
        "B": "train/B/train_1.png",
        "label": "train/label/train_1.png",
    }
    assert (first["height"], first["width"], first["pad"]) == (SIZE, SIZE, [74, 74, 74, 74])
    assert [(t["row"], t["col"], t["y"], t["x"], t["file"]) for t in first["tiles"]][1] == (
        0,
        1,
        -74,
        118,
        "train_1_0_1.png",
    )
    assert str(levir) not in (out / "index.json").read_text()  # dataset-relative paths only

    # The tiles are a LEVIR-CD tree again, and merging the label tiles gives the label back.
    tiled = get_dataset("levir-cd", out, "train")
    assert len(tiled) == 8 and tiled[0]["image_a"].shape == (3, 256, 256)
    test = next(e for e in index["images"] if e["split"] == "test")
    pieces = [(t["row"], t["col"], read_label(out / "test" / "label" / t["file"]) // 255) for t in test["tiles"]]
    original = read_label(levir / test["source"]["label"]) // 255
    assert np.array_equal(merge_and(pieces, original.shape), original)
    tile = read_image(out / "test" / "A" / "test_1_0_1.png")  # image rows -74..182, columns 118..374
    assert np.array_equal(tile[:, 74:, :182], read_image(levir / "test" / "A" / "test_1.png")[:, :182, 118:])


def test_second_run_changes_nothing(levir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiles"
    argv = ["--dataset", "levir-cd", "--data-root", str(levir), "--out", str(out)]
    assert main(argv) == 0
    state, index = _state(out), (out / "index.json").read_bytes()
    capsys.readouterr()
    assert main(argv) == 0
    assert "48 tiles written" not in capsys.readouterr().out
    assert _state(out) == state
    assert (out / "index.json").read_bytes() == index

    # A damaged tile is rewritten, and only that one.
    damaged = out / "val" / "B" / "val_1_0_0.png"
    Image.fromarray(np.zeros((256, 256, 3), dtype=np.uint8)).save(damaged)
    state = _state(out)
    assert main(argv) == 0
    assert "1 tiles written, 47 unchanged" in capsys.readouterr().out
    after = _state(out)
    assert [k for k in state if after[k] != state[k]] == ["val/B/val_1_0_0.png"]
    assert not list(out.rglob("*.partial*"))


def test_levircd_plus_writes_its_val_split(tmp_path: Path) -> None:
    root = fakedata.make_levircd_plus(tmp_path / "plus", size=64).root
    out = tmp_path / "tiles"
    assert (
        main(["--dataset", "levir-cd-plus", "--data-root", str(root), "--out", str(out), "--splits", "val", "test"])
        == 0
    )
    val = get_dataset("levir-cd", out, "val")
    assert len(val) == 2  # 64 px -> one 256 tile per image; val = train_1 and train_11
    assert sorted({f.name.split("/")[-1].rsplit("_", 2)[0] for f in val.files}) == ["train_1", "train_11"]
    assert json.loads((out / "index.json").read_text())["splits"] == ["val", "test"]


def test_bad_input(levir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dataset", "levir-cd", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "LEVIR-CD expects" in capsys.readouterr().err
    assert main(["--dataset", "levir-cd", "--data-root", str(levir), "--out", str(levir)]) == 2
    assert "is the data root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset", "cdd", "--data-root", str(levir), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
