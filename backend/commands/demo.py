"""``make demo``: detect change on a generated pair, and on real pairs when the samples are present.

The real pairs are the georeferenced Landsat pair, LEVIR-CD's test_1 (0.5 m, new houses in
Texas), written as GeoTIFFs with an ILLUSTRATIVE georeference (the LEVIR-CD PNGs carry none; see
:func:`levir_geotiffs`), and the OSCD Sentinel-2 city saclay_w from its raw band files (stacked as a
user would, scored against its label). Each pair gets the shipped model that fits its pixel size,
and the log says which and why. Writes ``out/demo/<name>/`` (probability.tif, mask.tif, changes.gpkg,
preview.png) and prints where everything is and which weights produced it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from backend.commands.synthetic import generate_pair
from backend.inference import model_source
from backend.inference.pipeline import DetectResult, detect
from backend.inference.predict import select_device
from backend.labels.labeller import SUGGESTED, choose_weights
from backend.params import DetectParams
from backend.raster.stack import stack_bands

_log = logging.getLogger("backend.commands.demo")

REPO_ROOT = Path(__file__).resolve().parents[2]


def samples_dir() -> Path | None:
    """The real samples folder: ``$CLIPCD_SAMPLES``, else ``../shared/data`` beside the checkout."""
    configured = os.environ.get("CLIPCD_SAMPLES")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


# LEVIR-CD images come from Google Earth over Texas cities without coordinates. The demo places
# test_1 at an invented spot in UTM zone 14N (Austin's zone) with LEVIR's 0.5 m pixels, so the
# GIS outputs have sensible units; the location is illustrative and is labelled so in the files.
ILLUSTRATIVE_CRS = "EPSG:32614"
ILLUSTRATIVE_ORIGIN = (620000.0, 3350000.0)
LEVIR_PIXEL_M = 0.5


def levir_geotiffs(samples: Path, name: str, out: Path) -> tuple[Path, Path] | None:
    """Write LEVIR-CD ``name``'s before and after PNGs as GeoTIFFs with an illustrative georeference."""
    pngs = [samples / "levir-cd" / date / f"{name}.png" for date in ("A", "B")]
    if not all(p.is_file() for p in pngs):
        return None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for png, date in zip(pngs, ("before", "after"), strict=True):
        rgb = np.asarray(Image.open(png).convert("RGB")).transpose(2, 0, 1)
        path = out / f"levir-cd_{name}_{date}.tif"
        profile = {
            "driver": "GTiff", "width": rgb.shape[2], "height": rgb.shape[1], "count": 3, "dtype": "uint8",
            "crs": ILLUSTRATIVE_CRS, "transform": from_origin(*ILLUSTRATIVE_ORIGIN, LEVIR_PIXEL_M, LEVIR_PIXEL_M),
            "photometric": "RGB", "compress": "deflate",
        }  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(rgb)
            dst.update_tags(
                GEOREFERENCE="ILLUSTRATIVE: LEVIR-CD images carry no coordinates; CRS and origin are invented",
                SOURCE=f"LEVIR-CD {name} ({date}), research use",
            )
        written.append(path)
    return written[0], written[1]


def label_f1(result: DetectResult, label: Path) -> float:
    """F1 of the change class of a run's mask against a 0/255 label on the same grid."""
    truth = np.asarray(Image.open(label)) > 0
    with rasterio.open(result.outputs["mask"]) as src:
        found = src.read(1) == 1
    hits = int((truth & found).sum())
    return 2 * hits / max(1, int(truth.sum()) + int(found.sum()))


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

    # each pair gets the shipped model that fits its pixel size (the log says which and why); --model overrides
    loaded = model_source.resolve(args.model, select_device(args.device)) if args.model else None
    labelled = choose_weights(None) is not None  # the shipped models have no text side: prompts act through labels
    if not labelled:
        _log.info("no CLIP weights: the demo runs without prompts or labels (python -m backend clip get %s)", SUGGESTED)

    def prompts(*names: str) -> tuple[str, ...]:
        return names if labelled else ()

    runs: list[tuple[str, DetectResult]] = []
    pair = generate_pair(args.out / "synthetic" / "inputs", size=args.size)
    runs.append(
        ("synthetic", _run(pair.before, pair.after, args.out / "synthetic", args, loaded, prompts("building", "road")))
    )

    samples = samples_dir()
    landsat = samples / "landsat-pair" if samples else None
    if landsat and (landsat / "LS20010525.tif").exists():
        result = _run(
            landsat / "LS20010525.tif", landsat / "LS20010626.tif", args.out / "landsat", args, loaded, prompts("mine")
        )
        runs.append(("landsat", result))
    else:
        _log.info("real Landsat pair not found (set CLIPCD_SAMPLES to the shared data folder to include it)")
    levir = levir_geotiffs(samples, "test_1", args.out / "levir-cd" / "inputs") if samples else None
    if levir is not None:
        _log.info("LEVIR-CD test_1 written as GeoTIFFs with an ILLUSTRATIVE georeference (%s)", ILLUSTRATIVE_CRS)
        runs.append(("levir-cd", _run(levir[0], levir[1], args.out / "levir-cd", args, loaded, prompts("building"))))
    saclay = samples / "oscd-release" / "saclay_w" if samples else None
    if saclay is not None and (saclay / "imgs_1").is_dir():
        inputs = args.out / "saclay_w" / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        for date in (1, 2):  # the raw uint16 Sentinel-2 band files, as a user has them
            stack_bands(saclay / f"imgs_{date}", inputs / f"saclay_w_{date}.tif", ["B04", "B03", "B02", "B08"])
        _log.info("OSCD saclay_w: raw Sentinel-2 L1C bands stacked with `python -m backend stack` (B04 B03 B02 B08)")
        result = _run(inputs / "saclay_w_1.tif", inputs / "saclay_w_2.tif", args.out / "saclay_w", args, loaded, ())
        runs.append(("saclay_w (Sentinel-2, 10 m)", result))
        _log.info("saclay_w F1 against its label (cm/cm.png): %.3f", label_f1(result, saclay / "cm" / "cm.png"))
    else:
        _log.info("OSCD saclay_w not found (set CLIPCD_SAMPLES to the shared data folder to include it)")

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
    loaded: model_source.LoadedModel | None,
    prompts: tuple[str, ...],
) -> DetectResult:
    _log.info("detecting change: %s -> %s", before.name, after.name)
    params = DetectParams(
        before=before, after=after, out_dir=out, model=args.model, prompts=prompts, device=args.device
    )
    return detect(params, loaded=loaded)


if __name__ == "__main__":
    sys.exit(main())
