r"""Train a change model: ``python -m training.train --config training/configs/<name>.yaml``.

::

    python -m training.train --config training/configs/changeclip-rn50-levir-cd.yaml \\
        --data-root /data/LEVIR-CD-256 --pretrained openai-rn50 train.iterations=100
    torchrun --nproc-per-node 2 -m training.train --config ...      # DistributedDataParallel

One iteration: ``accumulate`` micro-batches of random crops (read on the data loader, augmented
on the device), forward under bf16 autocast on CUDA, cross-entropy (ignore 255), backward; then
one AdamW step and one schedule step. Every ``eval.every`` iterations the model is scored on the
validation sources (one global confusion matrix each, summed over ranks) and the best by IoU is
kept. The run folder (``--out``, default ``runs/<name>``) gets ``last.safetensors`` and
``best.safetensors`` (backend model files), ``last.state.pt`` (for ``--resume``),
``metrics.csv``, ``curves.png``, ``config.json`` and, at the end, ``run.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from backend.model import build_card, save_model
from backend.outputs.files import atomic_output
from backend.raster.transform import normalise
from training.cli import run_command, setup_logging
from training.data.augment import augment, radiometric, swap_dates, zoom
from training.data.loaders import CropPool, collate
from training.fit import distributed
from training.fit.checkpoint import BEST, load_checkpoint, save_checkpoint
from training.fit.config import TrainConfig, load_config
from training.fit.logbook import Logbook
from training.fit.models import build_training_model, describe_sources
from training.fit.optim import build_optimizer, change_loss
from training.fit.validate import Validator

_log = logging.getLogger("training.fit.train")


def _batches(loader: DataLoader[Any], sampler: DistributedSampler[Any], pool: CropPool, epoch: int) -> Iterator[Any]:
    """Endless batches, epoch after epoch (each with its own shuffle and crops)."""
    while True:
        sampler.set_epoch(epoch)
        pool.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(config: TrainConfig, run_dir: Path, *, device: str = "auto", resume: Path | None = None) -> dict[str, Any]:
    """Run ``config`` into ``run_dir``; returns the run summary (also written to ``run.json``)."""
    ctx = distributed.setup(device)
    try:
        return _train(config, run_dir, ctx, resume)
    finally:
        distributed.teardown(ctx)


def _train(config: TrainConfig, run_dir: Path, ctx: distributed.Context, resume: Path | None) -> dict[str, Any]:
    t, data = config.train, config.data
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(run_dir / "config.json") as partial:
            partial.write_text(json.dumps(config.to_dict(), indent=2), encoding="utf-8")
    model = build_training_model(config.model)
    module = model.to(ctx.device)
    if ctx.distributed and t.sync_bn:
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]
    # find_unused_parameters: not every parameter need take part (siamese-lite0's FPN has output
    # convolutions for levels it never reads); static_graph would do too, but breaks no_sync().
    net: torch.nn.Module = (
        DistributedDataParallel(
            module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None, find_unused_parameters=True
        )
        if ctx.distributed
        else module
    )
    optimizer, scheduler = build_optimizer(module, t.lr, t.weight_decay, t.betas, t.iterations, t.warmup)
    start, best, history = 0, {"iou": -1.0, "iteration": 0, "threshold": 0.5}, list[dict[str, Any]]()
    if resume is not None:
        state = load_checkpoint(resume, module, optimizer, scheduler)
        start, best, history = int(state["iteration"]), dict(state["best"]), list(state.get("history", []))

    pool = CropPool(
        data.train, data.root, data.crop, repeat_by_area=data.repeat_by_area, cache=data.cache,
        prompt_cache=data.prompt_cache, seed=t.seed,
    )  # fmt: skip
    workers = 0 if data.cache else data.workers
    sampler: DistributedSampler[Any] = DistributedSampler(pool, ctx.world_size, ctx.rank, shuffle=True, seed=t.seed)
    full = len(pool) // ctx.world_size >= t.batch
    loader = DataLoader(pool, t.batch, sampler=sampler, num_workers=workers, collate_fn=collate, drop_last=full)
    accumulate = max(1, math.ceil(t.effective_batch / (t.batch * ctx.world_size))) if t.effective_batch else 1
    per_epoch = max(len(loader), 1)
    batches = _batches(loader, sampler, pool, epoch=start * accumulate // per_epoch)
    validator = Validator(config, ctx)
    logbook = Logbook(run_dir, start) if ctx.main else None
    autocast = ctx.device.type == "cuda" and t.precision == "bf16"
    generator = torch.Generator().manual_seed(t.seed * 1000 + ctx.rank + start)
    mean, std = module.config.mean, module.config.std

    _log.info(
        "%s: %s, %d iterations of %d x %d x %d crops of %d² on %s (%d process%s)",
        config.name, module.config.name, t.iterations, t.batch, accumulate, ctx.world_size, data.crop, ctx.device,
        ctx.world_size, "" if ctx.world_size == 1 else "es",
    )  # fmt: skip
    interactive = ctx.main and sys.stderr.isatty()  # a bar on a terminal, log lines in files
    bar = tqdm(total=t.iterations, initial=start, disable=not interactive, dynamic_ncols=True, mininterval=2.0)
    net.train()
    seen, clock, losses = 0, time.perf_counter(), list[float]()
    began, train_seconds = time.perf_counter(), 0.0
    stop = min(t.iterations, t.stop_after) if t.stop_after > 0 else t.iterations
    for iteration in range(start, stop):
        step_began = time.perf_counter()
        for micro in range(accumulate):
            batch = next(batches)
            a = batch["image_a"].to(ctx.device, non_blocking=True)
            b = batch["image_b"].to(ctx.device, non_blocking=True)
            mask = batch["mask"].to(ctx.device, non_blocking=True)
            names = batch.get("names")
            if t.augment:
                a, b, mask = augment(a, b, mask, generator)
            a, b, mask = zoom(a, b, mask, generator, t.zoom)
            if t.radiometric > 0:
                a, b = radiometric(a, generator, t.radiometric), radiometric(b, generator, t.radiometric)
            if t.swap_dates > 0:
                a, b, swapped = swap_dates(a, b, generator, t.swap_dates)
                names = _swap_names(names, swapped.tolist())
            a, b = normalise(a, mean, std), normalise(b, mean, std)
            sync = not ctx.distributed or micro == accumulate - 1
            with (
                torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast),
                net.no_sync() if not sync and isinstance(net, DistributedDataParallel) else contextlib.nullcontext(),
            ):
                loss = change_loss(net(a, b, names=names), mask, t.loss)
                (loss / accumulate).backward()  # type: ignore[no-untyped-call]
            losses.append(float(loss.detach()))
            seen += a.shape[0] * ctx.world_size
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        train_seconds += time.perf_counter() - step_began
        done = iteration + 1
        bar.update(1)
        if done % config.eval.log_every == 0 or done == t.iterations:
            rate = seen / max(time.perf_counter() - clock, 1e-9)
            lr = optimizer.param_groups[0]["lr"]
            mean_loss = sum(losses) / max(len(losses), 1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", samples_per_s=f"{rate:.1f}")
            if ctx.main and not interactive:
                _log.info(
                    "iteration %d/%d: loss %.4f, lr %.2e, %.1f samples/s", done, t.iterations, mean_loss, lr, rate
                )
            if logbook is not None:
                logbook.add(iteration=done, loss=mean_loss, lr=lr, samples_per_s=rate)
            seen, clock, losses = 0, time.perf_counter(), []
        if validator.due(done):
            scores = validator.run(module, done)
            history.append({"iteration": done, **scores})
            if logbook is not None:
                logbook.add(
                    iteration=done, **{f"val_{k}": scores[k] for k in ("oa", "iou", "f1", "precision", "recall")}
                )
            if scores["selection_iou"] > best["iou"]:
                best = {"iou": scores["selection_iou"], "iteration": done, "threshold": scores["best_threshold"]}
                if ctx.main:
                    save_model(module, _card(config, module, done, scores), run_dir / BEST)
        if ctx.main and (done % config.eval.checkpoint_every == 0 or done == stop):
            card = _card(config, module, done, history[-1] if history else {})
            save_checkpoint(run_dir, module, card, optimizer, scheduler, done, {"best": best, "history": history})
    bar.close()
    seconds = time.perf_counter() - began
    if stop < t.iterations:
        _log.info("stopped after iteration %d of %d; continue with --resume %s", stop, t.iterations, run_dir)
        return {"name": config.name, "best": best, "run_dir": str(run_dir), "stopped_at": stop, "main": ctx.main}
    checksums = _rank_checksums(module, ctx)  # before finish() loads the best weights
    summary = validator.finish(
        module, run_dir, best, history, seconds, train_seconds, t.iterations - start, {"rank_checksums": checksums}
    )
    if logbook is not None:
        logbook.plot()
    return summary


def _swap_names(names: Any, swapped: list[bool]) -> Any:
    """The mined class names per date, exchanged where the images' dates were."""
    if names is None:
        return None
    names_a, names_b = names
    return (
        [nb if s else na for na, nb, s in zip(names_a, names_b, swapped, strict=True)],
        [na if s else nb for na, nb, s in zip(names_a, names_b, swapped, strict=True)],
    )


def _rank_checksums(module: torch.nn.Module, ctx: distributed.Context) -> list[float]:
    """A checksum of the weights on every rank (they must agree after DistributedDataParallel)."""
    total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().reshape(1)
    if not ctx.distributed:
        return [float(total)]
    gathered = [torch.zeros_like(total) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(gathered, total)
    return [float(g) for g in gathered]


def _card(config: TrainConfig, module: Any, iteration: int, scores: dict[str, Any]) -> Any:
    """A model card for a checkpoint: recipe, data, iteration, the validation figures so far."""
    threshold = float(scores.get("best_threshold", 0.5))
    metrics = {"validation": scores} if scores else {}
    training = {
        "config": config.name,
        "data": describe_sources(config.data.train),
        "validation_data": describe_sources(config.data.val),
        "iterations": iteration,
        "recipe": config.to_dict()["train"],
        "model": config.to_dict()["model"],
    }
    return build_card(module, threshold=threshold, training=training, metrics=metrics)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a YAML or TOML file (training/configs/ has one per paper row)")
    parser.add_argument("--data-root", help="folder the config's data sources are relative to")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument(
        "--pretrained", help="CLIP weights: a catalogue name (python -m backend clip list), an open_clip tag or a file"
    )
    parser.add_argument("--miner-pretrained", help="weights of the prompt-mining CLIP (a catalogue name, tag or file)")
    parser.add_argument("--resume", help="continue the run in this folder (its last.safetensors + last.state.pt)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.iterations=100 train.lr=3e-5")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad input, 1 a bug)."""
    args = build_parser().parse_intermixed_args(argv)
    setup_logging(fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.pretrained:
        overrides.append(f"model.pretrained={args.pretrained}")
    if args.miner_pretrained:
        overrides.append(f"model.miner_pretrained={args.miner_pretrained}")

    def work() -> str:
        config = load_config(args.config, overrides, args.data_root)
        run_dir = Path(args.out or Path("runs") / config.name)
        summary = train(config, run_dir, device=args.device, resume=Path(args.resume) if args.resume else None)
        return json.dumps({k: summary[k] for k in ("name", "best", "run_dir")}) if summary.get("main", True) else ""

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
