"""training.crossval: images dealt into folds, each fold trained without them and scored on them, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.training.tinyrun import kept_threads, make_pairs, write_config
from training.evaluation.crossval import best_pooled, deal, fold_config, image_names, main, model_threshold_from
from training.fit.config import load_config
from training.fit.validate import SWEEP


def test_deal_is_round_robin_in_name_order() -> None:
    assert deal(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]


def test_the_colour_threshold_is_the_pooled_best_even_when_no_threshold_is_perfect() -> None:
    def counts(tp: int, fp: int, fn: int) -> dict[str, int]:
        return {"tp": tp, "fp": fp, "fn": fn, "tn": 100}

    # two images; pooled F1 peaks at the third threshold, though image 1 alone peaks at the first
    first = {"sweep": [counts(5, 1, 5), counts(5, 3, 5), counts(6, 4, 4)] + [counts(1, 9, 9)] * (len(SWEEP) - 3)}
    second = {"sweep": [counts(1, 9, 9), counts(2, 8, 8), counts(8, 1, 2)] + [counts(1, 9, 9)] * (len(SWEEP) - 3)}
    threshold, matrix = best_pooled([first, second])
    assert threshold == SWEEP[2]
    assert matrix.as_dict()["tp"] == 14 and matrix.as_dict()["f1"] < 1.0


def test_folds_train_without_their_images_and_resume(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "data", count=4)
    path = write_config(tmp_path / "tiny.yaml", root)
    config = load_config(path, [], None)
    assert image_names(config) == ["pair_1", "pair_2", "pair_3", "pair_4"]  # the validation exclusion lifted
    fold = fold_config(config, ["pair_1", "pair_3"], "tiny-fold0")
    assert fold.data.train[0].exclude == ("pair_1", "pair_3") and fold.data.val == () and fold.data.test == ()

    out = tmp_path / "cv"
    with kept_threads():
        assert main(["--config", str(path), "--folds", "2", "--out", str(out), "--fold", "1"]) == 0
    first = json.loads((out / "crossval.json").read_text())
    assert not first["complete"] and list(first["results"]) == ["1"]
    scores = first["results"]["1"]
    assert scores["held_out"] == ["pair_2", "pair_4"] and set(scores["images"]) == {"pair_2", "pair_4"}
    for image in scores["images"].values():
        assert 0.0 <= image["model"]["f1"] <= 1.0 and image["colour"]["threshold"] == scores["colour"]["threshold"]
    assert (out / "fold-1" / "last.safetensors").is_file() and not (out / "fold-1" / "best.safetensors").exists()
    stamp = (out / "fold-1" / "scores.json").stat().st_mtime_ns

    with kept_threads():
        assert main(["--config", str(path), "--folds", "2", "--out", str(out)]) == 0
    done = json.loads((out / "crossval.json").read_text())
    assert done["complete"] and done["folds"] == [["pair_1", "pair_3"], ["pair_2", "pair_4"]]
    assert len(done["model_f1_per_fold"]) == 2 and done["model_f1_std"] is not None
    assert done["model_threshold"]["threshold"] in SWEEP and done["model_threshold"]["images"] == 4
    assert (out / "fold-1" / "scores.json").stat().st_mtime_ns == stamp  # a finished fold is not run again

    weights = (out / "fold-1" / "last.safetensors").stat().st_mtime_ns
    with kept_threads():
        assert main(["--config", str(path), "--folds", "2", "--out", str(out), "--tta", "flips"]) == 0
    flipped = json.loads((out / "crossval-tta-flips.json").read_text())
    assert flipped["tta"] == "flips" and flipped["complete"] and flipped["folds"] == done["folds"]
    assert all(flipped["results"][k]["tta"] == "flips" for k in ("0", "1"))
    assert (out / "fold-1" / "last.safetensors").stat().st_mtime_ns == weights  # scored again, not trained again
    assert json.loads((out / "crossval.json").read_text()) == done  # the plain report is kept beside it


def _fold(best_index: int, threshold: float = 0.5) -> dict[str, Any]:
    """One fold of one image whose model is perfect at sweep threshold ``best_index`` and poor elsewhere."""
    poor = {"tp": 2, "fp": 8, "fn": 8, "tn": 100}
    sweep = [{"tp": 10, "fp": 0, "fn": 0, "tn": 100} if i == best_index else poor for i in range(len(SWEEP))]
    recipe = sweep[list(SWEEP).index(threshold)]
    return {"threshold": threshold, "images": {f"city{best_index}": {"model": recipe, "model_sweep": sweep}}}


def test_a_chosen_threshold_is_kept_only_if_it_pays_on_folds_that_did_not_choose_it() -> None:
    at_08 = list(SWEEP).index(0.8)
    agree = model_threshold_from({"0": _fold(at_08), "1": _fold(at_08), "2": _fold(at_08)})
    assert agree is not None and agree["threshold"] == 0.8 and agree["rule"].startswith("pooled best")
    assert agree["f1_per_fold_at_threshold_from_other_folds"] == [1.0, 1.0, 1.0]
    # each fold's model peaks somewhere else: choosing on the others misses, so the recipe's stays
    spread = model_threshold_from({"0": _fold(1), "1": _fold(5), "2": _fold(14)})
    assert spread is not None and spread["threshold"] == 0.5 and spread["rule"] == "the recipe's"
    assert model_threshold_from({"0": _fold(1)}) is None
