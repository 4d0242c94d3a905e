"""``make demo``: detect change on a generated pair, and on the real Landsat pair when present.

Writes ``out/demo/<name>/`` (probability.tif, mask.tif, changes.gpkg, preview.png) and prints
where everything is and which weights produced it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from backend import model_source
from backend.params import DetectParams
from backend.pipeline import DetectResult, detect
from backend.predict import select_device
from backend.synthetic import generate_pair

_log = logging.getLogger("backend.demo")

REPO_ROOT = Path(__file__).resolve().parent.parent


def samples_dir() -> Path | None:
    """The real samples folder: ``$CLIPCD_SAMPLES``, else ``../shared/data`` beside the checkout."""
    configured = os.environ.get("CLIPCD_SAMPLES")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m backend.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "demo")
    parser.add_argument("--model", type=Path, help="model file; default: the best model the project ships")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--size", type=int, default=1024, help="side of the generated scene in pixels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("rasterio", "pyogrio", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    loaded = model_source.resolve(args.model, select_device(args.device))
    _log.info("model: %s", loaded.description)
    runs: list[tuple[str, DetectResult]] = []
    pair = generate_pair(args.out / "synthetic" / "inputs", size=args.size)
    runs.append(
        ("synthetic", _run(pair.before, pair.after, args.out / "synthetic", args, loaded, ("building", "road")))
    )

    samples = samples_dir()
    landsat = samples / "landsat-pair" if samples else None
    if landsat and (landsat / "LS20010525.tif").exists():
        result = _run(
            landsat / "LS20010525.tif", landsat / "LS20010626.tif", args.out / "landsat", args, loaded, ("mine",)
        )
        runs.append(("landsat", result))
    else:
        _log.info("real Landsat pair not found (set CLIPCD_SAMPLES to the shared data folder to include it)")

    _log.info("")
    for name, result in runs:
        _log.info("%s: %s", name, result.summary())
        _log.info("    preview: %s", result.outputs.get("preview"))
    return 0


def _run(
    before: Path,
    after: Path,
    out: Path,
    args: argparse.Namespace,
    loaded: model_source.LoadedModel,
    prompts: tuple[str, ...],
) -> DetectResult:
    _log.info("detecting change: %s -> %s", before.name, after.name)
    params = DetectParams(
        before=before, after=after, out_dir=out, model=args.model, prompts=prompts, device=args.device
    )
    return detect(params, loaded=loaded)


if __name__ == "__main__":
    sys.exit(main())
