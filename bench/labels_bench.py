"""What CLIP labels cost: a LEVIR-CD test_1 run with and without labels, on the same machine, in one process.

Usage: python -m bench.labels_bench [results.json]

The change model is the shipped default; the labels come from open_clip ViT-B/16 and ViT-B/32
CLIPs (the sizes of OpenAI's ViT-B/16 and of RemoteCLIP's and GeoRSCLIP's ViT-B/32) with random
weights, registered in a temporary CLIP folder: the timing does not depend on the weights. The
first labelled run also embeds the vocabulary's text (cold); later runs read it from the cache
beside the weights (warm), as a user's second run does. Rounds
alternate plain and labelled runs; the medians and the ratio are reported. Goal: labels add at
most 50 % (warm).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from backend.clip.manage import add
from backend.commands.demo import levir_geotiffs, samples_dir
from backend.inference.model_source import resolve
from backend.inference.pipeline import detect
from backend.inference.predict import select_device
from backend.model.config import ClipSpec
from backend.model.weights import build_clip
from backend.params import DetectParams

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.5


def measure(work: Path, arch: str, rounds: int = 3, device: str = "auto") -> dict[str, object]:
    """Seconds per LEVIR-CD test_1 run with and without labels by a CLIP of ``arch``; the labels' share."""
    samples = samples_dir()
    pair = levir_geotiffs(samples, "test_1", work / "levir") if samples else None
    if pair is None:
        raise SystemExit("LEVIR-CD test_1 not found: set CLIPCD_SAMPLES to the shared data folder")
    os.environ["CLIPCD_CLIP_DIR"] = str(work / f"clip-{arch}")
    torch.manual_seed(0)
    clip_file = work / f"{arch}-random.pt"
    torch.save(build_clip(ClipSpec(model=arch)).state_dict(), clip_file)
    add(clip_file, arch, f"{arch.lower()}-random")
    dev = select_device(device)  # type: ignore[arg-type]
    loaded = resolve(None, dev)

    def run(labels: bool) -> tuple[float, int]:
        params = DetectParams(
            before=pair[0],
            after=pair[1],
            out_dir=work / f"out-{labels}",
            labels=labels,
            device=dev.type,  # type: ignore[arg-type]
        )
        tick = time.perf_counter()
        result = detect(params, loaded=loaded)  # the only CLIP present labels
        return time.perf_counter() - tick, result.polygons

    run(False)  # untimed: warms the model and the file cache
    cold, polygons = run(True)  # embeds the vocabulary's text once, then caches it
    plain, labelled = [], []
    for _ in range(rounds):
        plain.append(run(False)[0])
        labelled.append(run(True)[0])
    base, with_labels = statistics.median(plain), statistics.median(labelled)
    return {
        "clip": arch,
        "device": dev.type,
        "polygons": polygons,
        "rounds": rounds,
        "plain_s": round(base, 2),
        "labelled_s": round(with_labels, 2),
        "labelled_cold_s": round(cold, 2),
        "labels_add": round(with_labels / base - 1.0, 3),
        "labels_add_cold": round(cold / base - 1.0, 3),
        "goal": GOAL,
        "plain_runs_s": [round(v, 2) for v in plain],
        "labelled_runs_s": [round(v, 2) for v in labelled],
    }


def main() -> None:
    """Measure, print the ratio and write the figures to JSON."""
    logging.basicConfig(level=logging.WARNING)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "labels.json"
    runs = []
    for arch in ("ViT-B-16-quickgelu", "ViT-B-32"):
        with tempfile.TemporaryDirectory(prefix="clipcd-labels-bench-") as tmp:
            figures = measure(Path(tmp), arch)
        runs.append(figures)
        print(
            f"labels on LEVIR-CD test_1 ({figures['polygons']} polygons, {arch}-sized CLIP, {figures['device']}): "
            f"{figures['labelled_s']} s against {figures['plain_s']} s without, labels add "
            f"{100 * float(figures['labels_add']):.0f} % warm, {100 * float(figures['labels_add_cold']):.0f} % on "
            f"the first run (text embedded); goal <= {100 * GOAL:.0f} %",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"torch_threads": torch.get_num_threads(), "runs": runs}
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
