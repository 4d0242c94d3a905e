"""training.export: a finished run becomes a model file whose card says what it is, fp32 or fp16."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from backend.errors import InputError
from backend.model import load_model, read_card
from tests.training.tinyrun import kept_threads, make_pairs, read_json, write_config
from training.fit import train
from training.modelfile import export


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with kept_threads(1):
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished 3-iteration run on fake pairs in a folder named like the LEVIR-CD crops."""
    tmp = tmp_path_factory.mktemp("export")
    make_pairs(tmp / "data" / "levir-cd-crops")
    config = write_config(
        tmp / "tiny.yaml",
        tmp / "data",
        data={
            "train": [{"dataset": "folder", "root": "levir-cd-crops", "exclude": ["pair_3"]}],
            "val": [{"dataset": "folder", "root": "levir-cd-crops", "only": ["pair_3"], "protocol": "tiles"}],
        },
    )
    with kept_threads():
        assert train.main(["--config", str(config), "--out", str(tmp / "run"), "--device", "cpu"]) == 0
    yield tmp / "run"


def test_the_exported_card_carries_threshold_licences_validation_and_description(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    card = export.export(run_dir, out, device="cpu")
    run = read_json(run_dir / "run.json")

    assert card["threshold"] == run["best"]["threshold"]
    licences = card["training"]["licences"]
    assert export.LICENCES["levir-cd-crops"] in licences and export.LICENCES["efficientnet-lite0"] in licences
    assert card["training"]["command"] == "python -m training.train --config training/configs/tiny.yaml"
    assert card["training"]["best_iteration"] == 3 and card["training"]["iterations"] == 3
    assert "levir-cd-crops" in card["training"]["data"] and "pair_3" in card["training"]["validation_data"]
    [(source, figures)] = card["metrics"]["validation"].items()
    assert "levir-cd-crops" in source and figures["protocol"] == "tiles" and figures["images"] == 1
    assert {"f1", "iou", "precision", "recall", "oa"} <= set(figures)
    assert "validation" in card["metrics"]["threshold_chosen_on"]
    assert "NOT CLIP-pretrained" in card["description"] and "prompts are ignored" in card["description"]

    on_disk = read_card(out)
    assert on_disk.threshold == card["threshold"] and on_disk.description == card["description"]
    model, loaded = load_model(out)
    best, _ = load_model(run_dir / "best.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), best.state_dict().values(), strict=True))
    assert loaded.metrics == card["metrics"]


def test_a_crossval_report_goes_on_the_card(run_dir: Path, tmp_path: Path) -> None:
    image = {"model": {"f1": 0.4}, "colour": {"f1": 0.3, "threshold": 0.5}}
    report = {
        "folds": [["a"], ["b"]],
        "results": {"0": {"images": {"a": image}}, "1": {"images": {"b": image}}},
        "model_f1_per_fold": [0.4, 0.5],
        "model_f1_mean": 0.45,
        "model_f1_std": 0.07,
        "colour_f1_per_fold": [0.3, 0.2],
    }
    path = tmp_path / "crossval.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    card = export.export(run_dir, tmp_path / "model.safetensors", rescore=False, device="cpu", crossval=path)
    figures = read_card(tmp_path / "model.safetensors").metrics["crossval"]
    assert figures == card["metrics"]["crossval"]
    assert figures["f1_per_fold"] == [0.4, 0.5] and figures["f1_mean"] == 0.45
    assert figures["f1_per_image"] == {
        "a": {"model": 0.4, "colour_difference": 0.3},
        "b": {"model": 0.4, "colour_difference": 0.3},
    }
    assert figures["tta"] == "none" and read_card(tmp_path / "model.safetensors").tta == "none"


def test_the_card_names_the_test_time_augmentation_its_figures_were_measured_with(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        asked.append(kwargs["tta"])
        return real_evaluate(*args, **kwargs)

    real_evaluate = export.evaluate
    monkeypatch.setattr(export, "evaluate", evaluate)
    flipped = tmp_path / "crossval-tta-flips.json"
    flipped.write_text(json.dumps({"tta": "flips", "model_f1_per_fold": [0.5]}), encoding="utf-8")
    out = tmp_path / "model.safetensors"
    with pytest.raises(InputError, match="measured with tta='flips' but the card would say tta='none'"):
        export.export(run_dir, out, rescore=False, device="cpu", crossval=flipped)
    assert not out.exists()
    card = export.export(run_dir, out, device="cpu", crossval=flipped, tta="flips")
    assert read_card(out).tta == "flips" and card["metrics"]["crossval"]["tta"] == "flips"
    assert asked == ["flips"]  # the validation images scored as detect will run the model


def test_a_run_without_validation_ships_its_last_weights_at_the_crossval_threshold(tmp_path: Path) -> None:
    make_pairs(tmp_path / "data")
    config = write_config(tmp_path / "all.yaml", tmp_path / "data", data={"train": [{"dataset": "folder"}], "val": []})
    with kept_threads():
        assert train.main(["--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert not (tmp_path / "run" / "best.safetensors").exists()
    with pytest.raises(InputError, match="--crossval"):
        export.export(tmp_path / "run", tmp_path / "model.safetensors", device="cpu")
    report = {
        "folds": [["pair_1"]],
        "results": {},
        "model_threshold": {
            "threshold": 0.35,
            "rule": "the recipe's",
            "images": 3,
            "f1_per_fold_at_threshold_from_other_folds": [0.2, 0.3],
            "f1_per_fold_at_recipe_threshold": [0.4, 0.5],
        },
    }
    (tmp_path / "crossval.json").write_text(json.dumps(report), encoding="utf-8")
    card = export.export(
        tmp_path / "run", tmp_path / "model.safetensors", device="cpu", crossval=tmp_path / "crossval.json"
    )
    assert card["threshold"] == 0.35
    assert card["metrics"]["threshold_chosen_on"] == (
        "cross-validation over 3 held-out images: the recipe's threshold "
        "(F1 per fold 25.0 with a threshold chosen on the other folds' images, 45.0 at the recipe's)"
    )
    assert card["training"]["best_iteration"] is None
    model, _ = load_model(tmp_path / "model.safetensors")
    last, _ = load_model(tmp_path / "run" / "last.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), last.state_dict().values(), strict=True))
    with pytest.raises(InputError, match="trained without validation images: its threshold comes from --crossval"):
        export.export(tmp_path / "run", tmp_path / "other.safetensors", device="cpu", threshold_from="validation")


def test_a_run_with_validation_can_take_the_crossval_threshold(run_dir: Path, tmp_path: Path) -> None:
    report = {"model_threshold": {"threshold": 0.35, "rule": "the recipe's", "images": 14}}
    (tmp_path / "crossval.json").write_text(json.dumps(report), encoding="utf-8")
    validated = read_json(run_dir / "run.json")["best"]["threshold"]
    own = export.export(
        run_dir, tmp_path / "own.safetensors", rescore=False, device="cpu", crossval=tmp_path / "crossval.json"
    )
    assert own["threshold"] == validated and own["metrics"]["threshold_chosen_on"].startswith("validation")
    with pytest.raises(InputError, match="takes its threshold from the cross-validation: pass --crossval"):
        export.export(run_dir, tmp_path / "x.safetensors", rescore=False, device="cpu", threshold_from="crossval")
    card = export.export(
        run_dir,
        tmp_path / "cv.safetensors",
        rescore=False,
        device="cpu",
        crossval=tmp_path / "crossval.json",
        threshold_from="crossval",
    )
    assert card["threshold"] == 0.35 and card["metrics"]["threshold_chosen_on"].startswith("cross-validation over 14")
    model, _ = load_model(tmp_path / "cv.safetensors")
    best, _ = load_model(run_dir / "best.safetensors")  # still the best checkpoint's weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), best.state_dict().values(), strict=True))


def test_no_rescore_takes_the_validation_figures_from_run_json(run_dir: Path, tmp_path: Path) -> None:
    card = export.export(run_dir, tmp_path / "model.safetensors", rescore=False, device="cpu")
    per_source = read_json(run_dir / "run.json")["validation"]["per_source"]
    assert card["metrics"]["validation"] == per_source


def test_fp16_halves_the_float_tensors_and_still_loads(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    assert export.main([str(run_dir), "--out", str(full), "--device", "cpu", "--no-rescore"]) == 0
    assert export.main([str(run_dir), "--out", str(half), "--device", "cpu", "--no-rescore", "--fp16"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == str(half) and "threshold" in printed

    with safe_open(str(full), framework="pt") as a, safe_open(str(half), framework="pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():  # noqa: SIM118 (safe_open is not a mapping)
            x, y = a.get_tensor(key), b.get_tensor(key)
            assert y.dtype == (torch.float16 if x.is_floating_point() else x.dtype), key
    assert half.stat().st_size < 0.55 * full.stat().st_size

    model, card = load_model(half)
    reference, _ = load_model(full)
    for (name, p), q in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        if q.is_floating_point():
            assert p.dtype == q.dtype == torch.float32, name
            torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-3)
    image = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(model(image, image.flip(-1)), reference(image, image.flip(-1)), rtol=0.05, atol=0.05)
    assert card.threshold == printed["threshold"]


def test_a_folder_that_is_not_a_finished_run_is_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export.main([str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    error = capsys.readouterr().err
    assert "run.json not found" in error and "finished training run" in error


def test_the_card_sentence_compares_mean_f1_on_the_same_sets() -> None:
    validation = {"a": {"f1": 0.8}, "b": {"f1": 0.6}}
    row = {"at_card_threshold": None, "at_best_threshold": {"f1": 0.2}}
    baselines = {
        "a": {"models": {"colour difference": row, "other net": {"at_card_threshold": {"f1": 0.9}}}},
        "b": {"models": {"colour difference": row, "other net": {"at_card_threshold": {"f1": 0.3}}}},
    }
    sentence = export._comparison(validation, baselines)
    assert "mean over 2 held-out sets: 70.0" in sentence
    assert "colour difference 20.0; other net 60.0." in sentence
    assert export._comparison(validation, {}) == ""
