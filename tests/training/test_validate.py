"""training.fit.validate: the pooled and the balanced rule for the best checkpoint and the card's threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training.evaluation.metrics import ConfusionMatrix
from training.fit import validate
from training.fit.config import TrainConfig
from training.fit.distributed import Context
from training.fit.validate import SWEEP, Validator


def _metrics(tp: int, fp: int, fn: int, tn: int = 10**6) -> dict[str, Any]:
    matrix = ConfusionMatrix(np.array([[tn, fp], [fn, tp]]))
    return matrix.as_dict()


def _big(i: int) -> dict[str, Any]:
    """100,000 changed pixels; F1 falls as the threshold rises."""
    return _metrics(tp=100_000 - 5_000 * i, fp=1_000, fn=5_000 * i)


def _small(i: int) -> dict[str, Any]:
    """1,000 changed pixels; F1 rises with the threshold."""
    tp = 100 + 50 * i
    return _metrics(tp=tp, fp=2_000 - 100 * i, fn=1_000 - tp)


def _validator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, balance: bool) -> Validator:
    canned = {"big": _big, "small": _small}

    def fake_evaluate(module: Any, card: Any, dataset: str, protocol: str, device: Any, **_: Any) -> dict[str, Any]:
        curve = canned[dataset]
        return {"images": 1, "metrics": curve(8), "sweep": [{"threshold": t, **curve(i)} for i, t in enumerate(SWEEP)]}

    monkeypatch.setattr(validate, "eval_set", lambda source, root, limit=0: Path(source.root).name)
    monkeypatch.setattr(validate, "evaluate", fake_evaluate)
    monkeypatch.setattr(validate, "build_card", lambda module, threshold: None)
    sources = [{"dataset": "folder", "root": name} for name in ("big", "small")]
    config = TrainConfig.from_dict(
        {
            "name": "x",
            "data": {"root": str(tmp_path), "train": sources[:1], "val": sources},
            "eval": {"balance_sources": balance},
        }
    )
    return Validator(config, Context(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))


def test_pooled_rule_follows_the_biggest_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scores = _validator(monkeypatch, tmp_path, balance=False).run(None, 1)
    assert scores["best_threshold"] == SWEEP[0], "the big source's best threshold should win the pooled F1"
    assert scores["selection_iou"] == scores["iou"]


def test_balanced_rule_counts_each_source_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scores = _validator(monkeypatch, tmp_path, balance=True).run(None, 1)
    mean_f1 = [(_big(i)["f1"] + _small(i)["f1"]) / 2 for i in range(len(SWEEP))]
    assert scores["best_threshold"] == SWEEP[int(np.argmax(mean_f1))] != SWEEP[0]
    assert scores["selection_iou"] == pytest.approx((_big(8)["iou"] + _small(8)["iou"]) / 2)
    assert scores["selection_iou"] < scores["iou"], "the small source's poor IoU must pull the mean down"


def test_the_card_names_the_rule_that_chose_its_threshold() -> None:
    assert validate.threshold_rule(True) == "validation (best the sources' mean F1 over a 0.10-0.90 sweep)"
    assert validate.threshold_rule(False) == "validation (best pooled F1 over a 0.10-0.90 sweep)"
