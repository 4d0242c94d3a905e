"""Score a change model on a labelled split: ``python -m training.evaluate``.

::

    python -m training.evaluate --model FILE.safetensors --data-root DIR --dataset levir-cd
        --split test --protocol changeclip-merge [--json]

One global confusion matrix over the split (:mod:`training.evaluation.metrics`), reported on the change
class. The protocols (``tiles``, ``changeclip-merge``, ``sliding``) are described in
:mod:`training.evaluation.predict`; ``sliding`` is what ``python -m backend detect`` does. Exit codes as
``backend``: 0 done, 2 bad input (the message says what to do), 1 a bug.

Training calls :func:`evaluate` with the model in memory for its validation passes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from backend.errors import InputError
from backend.inference.predict import Predictor, select_device
from backend.model import ModelCard
from backend.params import TTA_MODES, DetectParams
from backend.progress import ProgressFn, no_progress
from training.cli import run_command, setup_logging
from training.evaluation.metrics import ConfusionMatrix
from training.evaluation.predict import PROTOCOLS, Job, make_job, run_jobs

_log = logging.getLogger(__name__)


def evaluate(
    model: torch.nn.Module,
    card: ModelCard,
    dataset: Dataset[dict[str, Any]],
    protocol: str,
    device: torch.device | str = "auto",
    *,
    batch_size: int = 8,
    threshold: float | None = None,
    sweep: Sequence[float] = (),
    prompts: Sequence[str] = (),
    tile_size: int | None = None,
    overlap: int | None = None,
    workers: int = 0,
    distributed: bool = False,
    tta: str = "none",
    progress: ProgressFn = no_progress,
) -> dict[str, Any]:
    """Score ``model`` on every sample of ``dataset`` under ``protocol``.

    Args:
        model: A change model (the bare module, not a DistributedDataParallel wrapper); its
            train/eval mode is restored afterwards.
        card: Gives mean, std, threshold, tile size and overlap (``build_card(model)`` for a
            model being trained).
        dataset: Samples ``{"image_a", "image_b", "mask", "name"}`` of whole images (no crop).
        protocol: ``tiles``, ``changeclip-merge`` or ``sliding``.
        device: Where the model runs (``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device).
        batch_size: Patch pairs per forward pass.
        threshold: Probability at or above which a pixel is change; default the card's.
        sweep: More thresholds to score in the same pass (e.g. to choose one on validation).
        prompts: Class names for the model; empty uses its own prompt source, as ``detect`` does.
        tile_size: Sliding tile size; default the card's.
        overlap: Sliding overlap; default as ``backend detect`` chooses it (the card's, at most
            a quarter of a smaller tile).
        workers: DataLoader worker processes that decode images.
        distributed: Each torch.distributed rank scores its share of the samples and the counts
            are summed over the ranks (every rank must call this).
        tta: Test-time augmentation as ``backend detect --tta`` (``backend.inference.tta``).
        progress: ``progress(fraction, message)`` after each image.

    Returns:
        ``{"protocol", "images", "threshold", "metrics": ConfusionMatrix.as_dict()}``, plus
        ``"tile_size"`` and ``"overlap"`` for ``sliding``, and ``"sweep": [{"threshold": t,
        **metrics}, ...]`` when ``sweep`` is given.

    Raises:
        InputError: Unknown protocol, bad threshold or batch size, or malformed samples.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}.")
    chosen = float(card.threshold if threshold is None else threshold)
    thresholds = [chosen, *(float(t) for t in sweep)]
    for value in thresholds:
        if not 0.0 <= value <= 1.0:
            raise InputError(f"threshold {value} must be in [0, 1].")
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be at least 1.")
    # The engine's own rule (a smaller tile keeps at most a quarter of it as overlap, ...).
    tiling = DetectParams(Path(), Path(), Path(), tile=tile_size, overlap=overlap)
    tile, lap = tiling.resolve_tiling(int(card.tile_size), int(card.overlap))
    torch_device = device if isinstance(device, torch.device) else select_device(device)  # type: ignore[arg-type]

    indices = list(range(len(dataset)))  # type: ignore[arg-type]
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        indices = indices[torch.distributed.get_rank() :: torch.distributed.get_world_size()]
    loader: DataLoader[dict[str, Any]] = DataLoader(
        Subset(dataset, indices), batch_size=None, num_workers=workers, shuffle=False
    )
    matrices = [ConfusionMatrix() for _ in thresholds]
    was_training = model.training
    predictor = Predictor(model, card.mean, card.std, torch_device, batch_size, prompts, tta=tta)
    images = 0
    try:
        jobs = (_job(sample, protocol, tile, lap) for sample in loader)
        for job, mask_at in run_jobs(predictor, jobs, batch_size):
            target = cast(np.ndarray, job.key)  # set by _job
            for value, matrix in zip(thresholds, matrices, strict=True):
                matrix.update(mask_at(value), target)
            images += 1
            progress(images / max(len(indices), 1), f"image {images}/{len(indices)}")
    finally:
        model.train(was_training)
    if distributed:
        for matrix in matrices:
            matrix.all_reduce()
        images = _sum_over_ranks(images)
    result: dict[str, Any] = {
        "protocol": protocol,
        "images": images,
        "threshold": chosen,
        "metrics": matrices[0].as_dict(),
    }
    if tta != "none":
        result["tta"] = tta
    if protocol == "sliding":
        result["tile_size"], result["overlap"] = tile, lap
    if sweep:
        result["sweep"] = [{"threshold": t, **m.as_dict()} for t, m in zip(thresholds[1:], matrices[1:], strict=True)]
    return result


def _job(sample: dict[str, Any], protocol: str, tile_size: int, overlap: int) -> Job:
    """The protocol's job for one dataset sample; its key is the target mask."""
    try:
        image_a = _array(sample["image_a"], np.float32)
        image_b = _array(sample["image_b"], np.float32)
        target = _array(sample["mask"], np.int64)
    except KeyError as exc:
        raise InputError(f"a dataset sample lacks {exc}; samples need image_a, image_b and mask.") from None
    name = sample.get("name", "?")
    if image_a.ndim != 3 or image_a.shape != image_b.shape or target.shape != image_a.shape[1:]:
        raise InputError(
            f"sample {name}: images {image_a.shape} and {image_b.shape} with mask {target.shape} do not match; "
            "expected two (3, H, W) images and an (H, W) mask."
        )
    return make_job(protocol, image_a, image_b, tile_size=tile_size, overlap=overlap, key=target)


def _array(value: Any, dtype: type[np.generic]) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def _sum_over_ranks(value: int) -> int:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    device = torch.device("cpu")
    if torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    total = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(total)
    return int(total.item())


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description="Score a ClipCD model file on a labelled split."
    )
    parser.add_argument("--model", type=Path, required=True, help="model file (.safetensors with its card)")
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset's root folder")
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. levir-cd, whu-cd, folder")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS, help="how whole images are predicted")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--batch", type=int, default=8, help="patch pairs per forward pass")
    parser.add_argument("--threshold", type=float, help="change probability threshold (default: the card's)")
    parser.add_argument("--tile", type=int, help="sliding: tile size in pixels (default: the card's)")
    parser.add_argument("--overlap", type=int, help="sliding: tile overlap in pixels (default: as backend detect)")
    parser.add_argument("--prompts", default="", help='class names, e.g. "building"; default: the model\'s own')
    parser.add_argument("--workers", type=int, default=0, help="image decoding processes")
    parser.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time augmentation, as backend detect")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def work() -> str:
        report = _run(args)
        return json.dumps(report) if args.json else format_table(report)

    return run_command(work)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from backend.model import load_model
    from training.datasets import get_dataset

    device = select_device(args.device)
    dataset = get_dataset(args.dataset, args.data_root, args.split)
    if len(dataset) == 0:
        raise InputError(f"{args.data_root}: the {args.dataset} {args.split} split holds no image pairs.")
    model, card = load_model(args.model, device=str(device))
    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
    _log.info(
        "scoring %s on %d %s %s pairs (%s, %s)",
        args.model.name,
        len(dataset),
        args.dataset,
        args.split,
        args.protocol,
        device,
    )
    result = evaluate(
        model,
        card,
        dataset,
        args.protocol,
        device,
        batch_size=args.batch,
        threshold=args.threshold,
        prompts=prompts,
        tile_size=args.tile,
        overlap=args.overlap,
        workers=args.workers,
        tta=args.tta,
        progress=_log_progress(),
    )
    return {"dataset": args.dataset, "split": args.split, "model": str(args.model), **result}


def _log_progress() -> ProgressFn:
    last = [-1.0]

    def report(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.1 or fraction >= 1.0:
            last[0] = fraction
            _log.info("%5.1f%% %s", 100 * fraction, message)

    return report


def format_table(report: dict[str, Any]) -> str:
    """The report as a short human-readable table, scores in %."""
    metrics = report["metrics"]
    lines = [
        f"{report.get('dataset', '?')} {report.get('split', '')}: {report['images']} images, "
        f"protocol {report['protocol']}, threshold {report['threshold']:g}",
        f"model: {report.get('model', '?')}",
        "",
        f"{'OA':>8} {'IoU':>8} {'F1':>8} {'Precision':>10} {'Recall':>8}",
        f"{100 * metrics['oa']:8.2f} {100 * metrics['iou']:8.2f} {100 * metrics['f1']:8.2f} "
        f"{100 * metrics['precision']:10.2f} {100 * metrics['recall']:8.2f}",
        f"(TP {metrics['tp']:,}  FP {metrics['fp']:,}  FN {metrics['fn']:,}  TN {metrics['tn']:,})",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
