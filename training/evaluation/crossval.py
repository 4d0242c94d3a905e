r"""Cross-validation over whole images (cities): ``python -m training.crossval``.

::

    python -m training.crossval --config training/configs/oscd-s2.yaml --folds 4 --out runs/cv \\
        [--fold 0 --fold 2] [--tta d4] [train.iterations=300 ...]

The images of the config's first training source (validation exclusions lifted) are dealt
round-robin, in name order, into ``--folds`` folds. For each fold the recipe trains on the other
folds for its fixed length, with no validation: nothing is chosen on the held-out images. The last
weights are then scored on each held-out image as ``backend detect`` runs (sliding tiles, at the
card's threshold), beside a colour-difference threshold (at its best threshold on those same images,
an optimistic baseline). ``<out>/fold-<i>/scores.json`` is written per fold (a finished fold is not
run again), ``<out>/crossval.json`` at the end: per image, per fold (pooled over its images) and the
mean and spread over folds. ``--tta flips|d4`` scores the model as ``backend detect --tta`` does; the
folds' weights are reused and the figures go to ``scores-tta-<mode>.json`` and
``crossval-tta-<mode>.json`` beside the plain ones, so one training run gives both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.model import load_model
from backend.outputs.files import atomic_output
from backend.params import TTA_MODES, check_tta
from training.cli import run_command, setup_logging
from training.data.loaders import eval_set, open_source
from training.evaluation.compare import ColourDifference, colour_card
from training.evaluation.evaluate import evaluate
from training.evaluation.metrics import ConfusionMatrix
from training.fit.config import Source, TrainConfig, load_config
from training.fit.distributed import pick_device
from training.fit.train import train
from training.fit.validate import SWEEP

_log = logging.getLogger(__name__)


def image_names(config: TrainConfig) -> list[str]:
    """The sample names of the first training source, exclusions lifted, in name order (e.g. city names)."""
    source = dataclasses.replace(config.data.train[0], exclude=(), only=())
    dataset, keep = open_source(source, config.data.root)
    files = dataset.files  # type: ignore[attr-defined]
    return sorted(Path(files[i].name).stem for i in keep)


def deal(names: Sequence[str], folds: int) -> list[list[str]]:
    """``names`` dealt round-robin into ``folds`` lists (name order, so the deal is reproducible)."""
    return [list(names[i::folds]) for i in range(folds)]


def fold_config(config: TrainConfig, held_out: Sequence[str], name: str) -> TrainConfig:
    """The recipe trained on everything but ``held_out``, without validation or test sources."""
    source = dataclasses.replace(config.data.train[0], exclude=tuple(held_out), only=())
    data = dataclasses.replace(config.data, train=(source, *config.data.train[1:]), val=(), test=())
    return dataclasses.replace(config, name=name, data=data)


def report_name(stem: str, tta: str) -> str:
    """``scores.json`` for plain scoring, ``scores-tta-d4.json`` for ``tta="d4"`` (likewise ``crossval``)."""
    return f"{stem}.json" if tta == "none" else f"{stem}-tta-{tta}.json"


def score_fold(
    run_dir: Path, config: TrainConfig, held_out: Sequence[str], device: str, tta: str = "none"
) -> dict[str, Any]:
    """The fold's last weights (test-time augmented by ``tta``) and the colour difference on each held-out image."""
    torch_device = pick_device(device)
    model, card = load_model(run_dir / "last.safetensors", device=str(torch_device))
    base = config.data.train[0]
    images: dict[str, Any] = {}
    pooled = {"model": ConfusionMatrix(), "colour": ConfusionMatrix()}
    colour_results = []
    for name in held_out:
        source = Source(dataset=base.dataset, root=base.root, split=base.split, only=(name,), protocol="sliding")
        dataset = eval_set(source, config.data.root)
        scored = evaluate(model, card, dataset, "sliding", torch_device, sweep=SWEEP, tta=tta)
        colour = evaluate(ColourDifference(), colour_card(), dataset, "sliding", torch_device, sweep=SWEEP)
        colour_results.append(colour)
        images[name] = {"model": scored["metrics"], "colour": colour, "model_sweep": scored["sweep"]}
        pooled["model"] = _add(pooled["model"], scored["metrics"])
        _log.info("%s: F1 %.3f (model at %.2f)", name, scored["metrics"]["f1"], card.threshold)
    best_at, best_matrix = best_pooled(colour_results)
    index = list(SWEEP).index(best_at)
    for name, result in zip(held_out, colour_results, strict=True):
        images[name]["colour"] = {"threshold": best_at, **result["sweep"][index]}
    return {
        "held_out": list(held_out),
        "threshold": card.threshold,
        "tta": tta,
        "images": images,
        "model": pooled["model"].as_dict(),
        "colour": {"threshold": best_at, **best_matrix.as_dict()},
    }


def best_pooled(results: Sequence[dict[str, Any]], key: str = "sweep") -> tuple[float, ConfusionMatrix]:
    """The sweep threshold at which F1 pooled over ``results``' images (each a ``key`` list of counts) is highest."""
    best: tuple[float, float, ConfusionMatrix] | None = None
    for index, threshold in enumerate(SWEEP):
        matrix = _pool([result[key][index] for result in results])
        f1 = float(matrix.as_dict()["f1"])
        if best is None or f1 > best[0]:
            best = (f1, threshold, matrix)
    if best is None:
        raise ValueError("no results to choose a threshold from")
    return best[1], best[2]


def model_threshold_from(results: dict[str, Any]) -> dict[str, Any] | None:
    """The threshold for a model trained on every image, and the measurement behind it.

    Each fold's figures stay at the recipe's threshold (nothing chosen on held-out images). Whether
    choosing one pays is itself measured: for each fold, the sweep's pooled best over the *other*
    folds' held-out images, scored on this fold's (nested, so still unseen). If that beats the
    recipe's threshold on average, the next model gets the pooled best over every held-out image;
    otherwise the recipe's. None while a fold was scored without the sweep.
    """
    folds = [list(fold["images"].values()) for _, fold in sorted(results.items())]
    images = [image for fold in folds for image in fold]
    if len(folds) < 2 or not all("model_sweep" in image for image in images):
        return None
    nested = []
    for index, fold in enumerate(folds):
        others = [image for other, rest in enumerate(folds) if other != index for image in rest]
        chosen, _ = best_pooled(others, key="model_sweep")
        at = list(SWEEP).index(chosen)
        nested.append(_pool([image["model_sweep"][at] for image in fold]).as_dict()["f1"])
    fixed = [_pool([image["model"] for image in fold]).as_dict()["f1"] for fold in folds]
    pooled_best, matrix = best_pooled(images, key="model_sweep")
    recipe = float(next(iter(results.values()))["threshold"])
    chosen_pays = statistics.fmean(nested) > statistics.fmean(fixed)
    return {
        "threshold": pooled_best if chosen_pays else recipe,
        "rule": "pooled best over every held-out image" if chosen_pays else "the recipe's",
        "pooled_best": pooled_best,
        "pooled_best_f1": matrix.as_dict()["f1"],
        "f1_per_fold_at_recipe_threshold": fixed,
        "f1_per_fold_at_threshold_from_other_folds": nested,
        "images": len(images),
    }


def _pool(counts: Sequence[dict[str, Any]]) -> ConfusionMatrix:
    matrix = ConfusionMatrix()
    for one in counts:
        matrix = _add(matrix, one)
    return matrix


def _add(matrix: ConfusionMatrix, counts: dict[str, Any]) -> ConfusionMatrix:
    extra = ConfusionMatrix(np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]]))
    return ConfusionMatrix(matrix.matrix + extra.matrix)


def crossval(
    config: TrainConfig, folds: int, out: Path, only: Sequence[int] = (), device: str = "auto", tta: str = "none"
) -> dict[str, Any]:
    """Run (or resume) the folds and write ``crossval.json`` (``report_name``); returns its content."""
    check_tta(tta)  # before a fold trains, not after
    names = image_names(config)
    dealt = deal(names, folds)
    results: dict[str, Any] = {}
    for index, held_out in enumerate(dealt):
        fold_dir = out / f"fold-{index}"
        scores_file = fold_dir / report_name("scores", tta)
        if scores_file.is_file():
            results[str(index)] = json.loads(scores_file.read_text(encoding="utf-8"))
            continue
        if only and index not in only:
            continue
        _log.info("fold %d of %d: holding out %s", index, folds, ", ".join(held_out))
        if not (fold_dir / "run.json").is_file():  # a fold whose training finished is only scored again
            train(fold_config(config, held_out, f"{config.name}-fold{index}"), fold_dir, device=device)
        scores = score_fold(fold_dir, config, held_out, device, tta)
        with atomic_output(scores_file) as partial:
            partial.write_text(json.dumps(scores, indent=2), encoding="utf-8")
        results[str(index)] = scores
    f1s = [results[k]["model"]["f1"] for k in sorted(results)]
    colours = [results[k]["colour"]["f1"] for k in sorted(results)]
    summary = {
        "config": config.name,
        "tta": tta,
        "folds": dealt,
        "results": results,
        "model_f1_per_fold": f1s,
        "colour_f1_per_fold": colours,
        "model_f1_mean": statistics.fmean(f1s) if f1s else None,
        "model_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else None,
        "colour_f1_mean": statistics.fmean(colours) if colours else None,
        "complete": len(results) == folds,
        "model_threshold": model_threshold_from(results),
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / report_name("crossval", tta)) as partial:
        partial.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.crossval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the recipe; its first training source is split by image")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fold", type=int, action="append", default=[], help="run only these folds (repeatable)")
    parser.add_argument("--data-root", help="replaces the config's data root")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tta", choices=TTA_MODES, default="none", help="score as backend detect --tta does")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.iterations=300")
    args = parser.parse_args(argv)
    setup_logging(fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def work() -> str:
        config = load_config(Path(args.config), args.overrides, args.data_root)
        summary = crossval(config, args.folds, args.out, args.fold, args.device, args.tta)
        per_fold = ", ".join(f"{100 * f:.1f}" for f in summary["model_f1_per_fold"])
        colour = ", ".join(f"{100 * f:.1f}" for f in summary["colour_f1_per_fold"])
        written = args.out / report_name("crossval", args.tta)
        return f"F1 per fold: {per_fold} (colour difference: {colour}); written {written}"

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
