"""Validation during training, the threshold chosen on it, and the test scores at the end.

Each validation source is scored with :func:`training.evaluation.evaluate.evaluate` under its protocol;
the sources' confusion matrices are also summed into one pooled score, which picks the best
checkpoint (IoU at threshold 0.5, as ChangeCLIP keeps its best-IoU checkpoint) and the threshold
that ships on the card (the pooled F1's best over a sweep). With ``eval.balance_sources`` the
mean of the sources' IoU and F1 decides instead, so that a source with many changed pixels does
not outvote the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file

from backend.model import build_card
from backend.outputs.files import atomic_output
from training.data.loaders import eval_set, source_root
from training.evaluation.evaluate import evaluate
from training.evaluation.metrics import ConfusionMatrix
from training.fit import distributed
from training.fit.checkpoint import BEST
from training.fit.config import Source, TrainConfig
from training.fit.models import describe_sources

_log = logging.getLogger(__name__)
SWEEP = tuple(round(0.05 * i, 2) for i in range(2, 19))  # 0.10 ... 0.90
_COUNTS = ("tn", "fp", "fn", "tp")


def threshold_rule(balance_sources: bool) -> str:
    """How the card's threshold is chosen, in words (the card's ``threshold_chosen_on``)."""
    rule = "the sources' mean F1" if balance_sources else "pooled F1"
    return f"validation (best {rule} over a {SWEEP[0]:.2f}-{SWEEP[-1]:.2f} sweep)"


def _matrix(metrics: dict[str, Any]) -> ConfusionMatrix:
    return ConfusionMatrix(np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]))


def _label(source: Source) -> str:
    return describe_sources([source])


class Validator:
    """Scores a model on a config's validation (and, at the end, test) sources."""

    def __init__(self, config: TrainConfig, ctx: distributed.Context) -> None:
        self.config, self.ctx = config, ctx
        limit = config.eval.max_images
        self.val = [(s, eval_set(s, config.data.root, limit)) for s in config.data.val]
        self.test = [(s, eval_set(s, config.data.root)) for s in config.data.test]

    def due(self, iteration: int) -> bool:
        """True when ``iteration`` (1-based count of finished iterations) is a validation point."""
        every = self.config.eval.every
        return bool(self.val) and (iteration == self.config.train.iterations or (every > 0 and iteration % every == 0))

    def _score(self, module: Any, sources: list[tuple[Source, Any]], threshold: float) -> dict[str, Any]:
        card = build_card(module, threshold=threshold)
        pooled = [ConfusionMatrix() for _ in (threshold, *SWEEP)]
        per_source: dict[str, Any] = {}
        sweeps: list[list[float]] = []  # per source, F1 over the sweep
        for source, dataset in sources:
            result = evaluate(
                module, card, dataset, source.protocol, self.ctx.device, batch_size=self.config.eval.batch,
                sweep=SWEEP, distributed=self.ctx.distributed,
            )  # fmt: skip
            per_source[_label(source)] = {"protocol": source.protocol, "images": result["images"], **result["metrics"]}
            sweeps.append([row["f1"] for row in result["sweep"]])
            for matrix, metrics in zip(pooled, [result["metrics"], *result["sweep"]], strict=True):
                matrix.merge(_matrix(metrics))
        overall = pooled[0].as_dict()
        if self.config.eval.balance_sources and per_source:
            selection = float(np.mean([figures["iou"] for figures in per_source.values()]))
            f1s = [float(f) for f in np.mean(np.array(sweeps), axis=0)]
        else:
            selection, f1s = overall["iou"], [m.as_dict()["f1"] for m in pooled[1:]]
        best = int(np.argmax(f1s))
        return {
            **{k: v for k, v in overall.items() if k not in _COUNTS},
            "selection_iou": selection,
            "threshold": threshold,
            "best_threshold": SWEEP[best],
            "best_threshold_f1": f1s[best],
            "per_source": per_source,
        }

    def run(self, module: Any, iteration: int) -> dict[str, Any]:
        """Pooled validation scores at threshold 0.5, the best threshold, and per-source figures."""
        scores = self._score(module, self.val, 0.5)
        _log.info(
            "validation @%d: IoU %.4f F1 %.4f P %.4f R %.4f (best threshold %.2f: F1 %.4f)%s",
            iteration, scores["iou"], scores["f1"], scores["precision"], scores["recall"],
            scores["best_threshold"], scores["best_threshold_f1"],
            f"; mean IoU of the sources {scores['selection_iou']:.4f}" if self.config.eval.balance_sources else "",
        )  # fmt: skip
        for name, figures in scores["per_source"].items():
            _log.info("  %s: F1 %.4f IoU %.4f", name, figures["f1"], figures["iou"])
        return scores

    def finish(
        self,
        module: Any,
        run_dir: Path,
        best: dict[str, Any],
        history: list[dict[str, Any]],
        seconds: float,
        train_seconds: float,
        iterations: int,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Score the best checkpoint on the test sources and write ``run.json``."""
        best_file = run_dir / BEST
        if best_file.is_file():
            module.load_state_dict(load_file(str(best_file), device=str(self.ctx.device)), strict=True)
        config = self.config
        test = self._score(module, self.test, float(best.get("threshold", 0.5))) if self.test else {}
        first = config.data.test[0] if config.data.test else config.data.train[0]
        samples = iterations * config.train.batch * self.ctx.world_size
        summary = {
            "name": config.name,
            "model": config.model.config,
            "dataset": first.dataset if first.dataset != "folder" else Path(first.root).name,
            "data_root": str(source_root(first, config.data.root)),
            "protocol": first.protocol,
            "run_dir": str(run_dir),
            "best": best,
            "validation": history[-1] if history else {},
            "test": test,
            "seconds": round(seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "samples_per_second": round(samples / max(train_seconds, 1e-9), 2),
            "device": str(self.ctx.device),
            "world_size": self.ctx.world_size,
            "main": self.ctx.main,
            **(extra or {}),
        }
        if self.ctx.main:
            with atomic_output(run_dir / "run.json") as partial:
                partial.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary
