r"""Scores against sparse reference samples: ``python -m training.sparse``.

::

    python -m training.sparse ../shared/data/landsat-6band/Taizhou --bands 3,2,1 \\
        --model resources/models/clipcd-s2.safetensors --model resources/models/clipcd-default.safetensors

Some change references mark samples, not whole maps: the Landsat TM pairs of Wu, Du and Zhang
(TGRS 2014) in ``../shared/data/landsat-6band`` come with ``change.bmp`` and ``unchanged.bmp``
(255 marks a labelled pixel of that kind). A pair folder holds those two files and the two dates'
rasters (any other files, ``.hdr`` and ``.aux.xml`` aside; the earlier date first in name order).

Each model runs as ``backend detect`` does (the same reader, bands, stretch and tiles), and so does
the colour difference. The change class is counted over the labelled pixels only: at the model's
card threshold, and at the best threshold of the validation sweep (an upper bound, chosen on the
same samples; for the colour difference that is the only figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from backend.commands.options import parse_bands
from backend.errors import InputError
from backend.inference import model_source
from backend.inference.pipeline import detect
from backend.outputs.files import atomic_output
from backend.params import DetectParams, Device
from training.cli import run_command, setup_logging
from training.evaluation.compare import ColourDifference, colour_card
from training.evaluation.metrics import ConfusionMatrix
from training.fit.validate import SWEEP

_log = logging.getLogger(__name__)

CHANGE, UNCHANGED = "change.bmp", "unchanged.bmp"
_SIDECARS = (".hdr", ".aux.xml", ".xml", ".txt", ".md")


def pair_files(folder: Path) -> tuple[Path, Path]:
    """The two dates' rasters of a sparse-reference folder (earlier first, by name)."""
    if not (folder / CHANGE).is_file() or not (folder / UNCHANGED).is_file():
        raise InputError(f"{folder} has no {CHANGE} and {UNCHANGED}: it is not a sparse-reference pair folder")
    rasters = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name not in (CHANGE, UNCHANGED) and not p.name.lower().endswith(_SIDECARS)
    )
    if len(rasters) != 2:
        raise InputError(
            f"{folder} must hold exactly two rasters beside the samples, found {[p.name for p in rasters]}"
        )
    return rasters[0], rasters[1]


def reference(folder: Path) -> np.ndarray:
    """The samples as a target: 1 change, 0 unchanged, 255 unlabelled (and where both files mark a pixel)."""
    with warnings.catch_warnings():  # the samples are plain images, on the first date's grid
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(folder / CHANGE) as src:
            change = src.read(1) > 127
        with rasterio.open(folder / UNCHANGED) as src:
            unchanged = src.read(1) > 127
    if change.shape != unchanged.shape:
        raise InputError(f"{folder}: {CHANGE} is {change.shape}, {UNCHANGED} is {unchanged.shape}; they must match")
    target = np.full(change.shape, 255, dtype=np.uint8)
    target[unchanged & ~change] = 0
    target[change & ~unchanged] = 1
    return target


def _probability(params: DetectParams, loaded: model_source.LoadedModel | None) -> tuple[np.ndarray, float]:
    with tempfile.TemporaryDirectory(prefix="clipcd-sparse-") as tmp:
        run = dataclasses.replace(params, out_dir=Path(tmp) / "out")
        result = detect(run, loaded=loaded)
        with rasterio.open(result.outputs["probability"]) as src:
            return src.read(1).astype(np.float32), result.threshold


def _scores(probability: np.ndarray, target: np.ndarray, threshold: float | None) -> dict[str, Any]:
    if probability.shape != target.shape:
        raise InputError(f"the change map is {probability.shape}, the samples are {target.shape}; they must match")
    sweep = {t: ConfusionMatrix().update(probability >= t, target).as_dict() for t in SWEEP}
    best = max(sweep, key=lambda t: sweep[t]["f1"])
    out: dict[str, Any] = {"best": {"threshold": best, **sweep[best]}}
    if threshold is not None:
        out["card"] = {"threshold": threshold, **ConfusionMatrix().update(probability >= threshold, target).as_dict()}
    return out


def score_pair(
    folder: Path, models: Sequence[Path], bands: tuple[int | str, ...] | None, device: Device = "cpu"
) -> dict[str, Any]:
    """Each model's and the colour difference's scores on one sparse-reference pair folder."""
    before, after = pair_files(folder)
    target = reference(folder)
    labelled = target != 255
    report: dict[str, Any] = {
        "pair": folder.name,
        "before": before.name,
        "after": after.name,
        "change_samples": int((target == 1).sum()),
        "unchanged_samples": int((target == 0).sum()),
        "scores": {},
    }
    base = DetectParams(  # each run writes into its own temporary folder (_probability)
        before=before,
        after=after,
        out_dir=folder,
        bands=bands,
        device=device,
        write_preview=False,
        probability_dtype="float16",
    )
    colour = model_source.LoadedModel(ColourDifference(), colour_card(), "colour difference")
    probability, _ = _probability(base, colour)
    report["scores"]["colour difference"] = _scores(probability, target, None)
    for path in models:
        probability, threshold = _probability(dataclasses.replace(base, model=path), None)
        report["scores"][path.name] = _scores(probability, target, threshold)
        _log.info(
            "%s, %s: F1 %.3f at the card's threshold %.2f (%d labelled pixels)",
            folder.name,
            path.name,
            report["scores"][path.name]["card"]["f1"],
            threshold,
            int(labelled.sum()),
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.sparse", description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", type=Path, help="pair folders (two rasters, change.bmp, unchanged.bmp)")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model file (repeatable)")
    parser.add_argument("--bands", type=parse_bands, help="the red, green and blue bands, e.g. 3,2,1 (as in detect)")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args(argv)
    setup_logging()

    def work() -> str:
        reports = [score_pair(folder, args.model, args.bands, args.device) for folder in args.pairs]
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(args.out) as partial:
                partial.write_text(json.dumps(reports, indent=2), encoding="utf-8")
        lines = []
        for report in reports:
            for name, scores in report["scores"].items():
                card = (
                    f"F1 {100 * scores['card']['f1']:.1f} at {scores['card']['threshold']:.2f}, "
                    if "card" in scores
                    else ""
                )
                best = scores["best"]
                lines.append(
                    f"{report['pair']:<10} {name:<28} {card}best F1 {100 * best['f1']:.1f} at {best['threshold']:.2f}"
                )
        return "\n".join(lines)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
