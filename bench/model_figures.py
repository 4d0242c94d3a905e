"""Model figures for the closing note: parameters, GFLOPs and CPU forward time per tile pair.

Usage: python bench/model_figures.py [OUT_JSON] [--configs a,b] [--repeats N] [--device cuda] [--bf16] [--batch N]

For each config (random weights; cost does not depend on the values): parameters, GFLOPs of one
256x256 tile-pair forward (torch FlopCounterMode: 2 FLOPs per multiply-add; prompt mining and
text encoding included), and on the CPU with torch's default thread count, batch 1, the minimum
over interleaved repeats after warm-up:
  * forward_s: time of one tile-pair forward with automatic prompts and an empty text
    cache (every tile has its own mined names, so the foreground prompts are always encoded);
  * forward_cached_text_s: the same with the text embeddings already cached (analyst prompts);
  * encoder_s: two image-encoder passes alone (the siamese encoder on both dates, batch 2);
  * ratio: forward_s / encoder_s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.model import create_model, list_models, model_summary


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timings(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, interleaved, so background load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return times


def figures(name: str, repeats: int, size: int = 256, device: str = "cpu", bf16: bool = False, batch: int = 1) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    model = create_model(name)
    build_s = time.perf_counter() - start
    summary = model_summary(model, size)
    model = model.to(device)
    g = torch.Generator().manual_seed(0)
    image_a, image_b = (torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2))
    cache = getattr(model, "_text_cache", {})
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)

    def cold() -> None:
        cache.clear()
        with autocast:
            model(image_a, image_b)

    def warm() -> None:
        with autocast:
            model(image_a, image_b, ["building"])

    def encoder() -> None:
        with autocast:
            model.encoder(both)

    both = torch.cat([image_a, image_b])
    with torch.no_grad():
        t = _timings({"forward": cold, "cached": warm, "encoder": encoder}, repeats)
    forward_s, cached_s, encoder_s = (min(t[k]) for k in ("forward", "cached", "encoder"))
    return {
        "config": name,
        "kind": model.config.kind,
        "params_m": summary["params"] / 1e6,
        "params_by_part_m": {k: v / 1e6 for k, v in summary["params_by_part"].items()},
        "gflops": summary["gflops"],
        "encoder_gflops": summary["encoder_gflops"],
        "build_s": build_s,
        "forward_s": forward_s,
        "forward_cached_text_s": cached_s,
        "encoder_s": encoder_s,
        "ratio_to_two_encoder_passes": forward_s / encoder_s,
        "ratio_cached_text": cached_s / encoder_s,
        "median_s": {k: statistics.median(v) for k, v in t.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="bench/results/model_figures.json")
    parser.add_argument("--configs", default=",".join(list_models()))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="run under bf16 autocast (as detect does on CUDA)")
    parser.add_argument("--batch", type=int, default=1, help="tile pairs per forward")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = [figures(name, args.repeats, 256, args.device, args.bf16, args.batch) for name in args.configs.split(",")]
    result = {
        "size": 256,
        "batch": args.batch,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "bf16": args.bf16,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "timing": "min over interleaved repeats (the machine may be shared); medians under median_s",
        "load_average": list(os.getloadavg()),
        "configs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    header = (
        f"{'config':<20} {'params M':>9} {'GFLOPs':>8} {'fwd s':>7} {'fwd(cached) s':>13} {'2x enc s':>9} {'ratio':>6}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['config']:<20} {r['params_m']:>9.1f} {r['gflops']:>8.1f} {r['forward_s']:>7.3f} "
            f"{r['forward_cached_text_s']:>13.3f} {r['encoder_s']:>9.3f} {r['ratio_to_two_encoder_passes']:>6.2f}"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
