"""Benchmark backend.outputs.vectorize against gdal_polygonize.py on an 8192² mask with ~10k polygons.

Usage: .venv/bin/python bench/vectorize_bench.py [results.json] [--size N] [--repeats R]

Writes a seeded mask.tif (uint8 1 change, 0 none, 255 nodata border) and probability.tif into a
temporary folder, times ``vectorize(...)`` and ``gdal_polygonize.py mask.tif -f GPKG out.gpkg`` on the
same mask (best of R runs each, every run in a fresh process so peak RSS is per run), and prints
and saves the ratio. It also measures vectorize's peak RSS on a 2048² crop of the same pattern.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_log = logging.getLogger("vectorize_bench")


def make_inputs(folder: Path, size: int, shapes: int, seed: int = 0) -> tuple[Path, Path]:
    """Write mask.tif and probability.tif with ``shapes`` random blobs and rectangles (scaled to the size)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    count = shapes * size * size // (8192 * 8192)
    rows = rng.integers(0, size - 40, count)
    cols = rng.integers(0, size - 40, count)
    heights = rng.integers(3, 32, count)
    widths = rng.integers(3, 32, count)
    ellipse = rng.random(count) < 0.5
    for r, c, h, w, round_ in zip(rows, cols, heights, widths, ellipse, strict=True):
        if round_:
            yy, xx = np.ogrid[:h, :w]
            blob = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0
            mask[r : r + h, c : c + w] |= blob.astype(np.uint8)
        else:
            mask[r : r + h, c : c + w] = 1
    mask[:, :16] = 255  # a nodata border, as where one date has no data
    probability = np.where(mask == 1, 140, 20).astype(np.uint8) + rng.integers(0, 100, mask.shape, dtype=np.uint8)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 6000000.0, 10.0, 10.0), "tiled": True, "blockxsize": 256,
        "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    mask_path, prob_path = folder / "mask.tif", folder / "probability.tif"
    with rasterio.open(mask_path, "w", nodata=255, **profile) as dst:
        dst.write(mask, 1)
    with rasterio.open(prob_path, "w", **profile) as dst:
        for start in range(0, size, 1024):
            dst.write(probability[start : start + 1024], 1, window=Window(0, start, size, min(1024, size - start)))
    return mask_path, prob_path


def peak_rss_mb() -> float:
    """Peak RSS of this process image; unlike ru_maxrss it does not inherit the parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mask: str, probability: str, out: str) -> None:
    """Run vectorize once in this process and print its time and peak RSS as JSON."""
    from backend.outputs.vectorize import vectorize

    start = time.perf_counter()
    result = vectorize(mask, probability, out)
    seconds = time.perf_counter() - start
    rss_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "count": result.count, "area_m2": result.area_m2, "peak_rss_mb": rss_mb}))


def run_vectorize(mask: Path, probability: Path, out: Path) -> dict[str, float]:
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(mask), str(probability), str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_gdal(mask: Path, out: Path) -> float:
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(["gdal_polygonize.py", "-q", str(mask), "-f", "GPKG", str(out)], check=True)
    return time.perf_counter() - start


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(ROOT / "bench" / "results" / "vectorize.json"))
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--shapes", type=int, default=11_000, help="shapes drawn; overlaps merge some")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="clipcd-bench-") as tmp:
        folder = Path(tmp)
        mask, probability = make_inputs(folder, args.size, args.shapes)
        runs = [run_vectorize(mask, probability, folder / "changes.gpkg") for _ in range(args.repeats)]
        gdal = [run_gdal(mask, folder / "gdal.gpkg") for _ in range(args.repeats)]
        small_dir = folder / "small"
        small_dir.mkdir()
        small = run_vectorize(*make_inputs(small_dir, 2048, args.shapes), small_dir / "changes.gpkg")
    best = min(r["seconds"] for r in runs)
    report = {
        "size": args.size,
        "polygons": int(runs[0]["count"]),
        "vectorize_s": [round(r["seconds"], 3) for r in runs],
        "gdal_polygonize_s": [round(s, 3) for s in gdal],
        "ratio_best": round(best / min(gdal), 3),
        "goal_ratio": 2.0,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "peak_rss_mb_2048": round(small["peak_rss_mb"], 1),
        "rss_ratio_vs_2048": round(max(r["peak_rss_mb"] for r in runs) / small["peak_rss_mb"], 3),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "gdal": rasterio.__gdal_version__,
    }
    _log.info(
        "vectorize %.2f s vs gdal_polygonize %.2f s on %d² with %d polygons: ratio %.2f (goal <= 2)",
        best, min(gdal), args.size, report["polygons"], report["ratio_best"],
    )  # fmt: skip
    _log.info("vectorize peak RSS %.0f MB (2048²: %.0f MB)", report["peak_rss_mb"], report["peak_rss_mb_2048"])
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _log.info("wrote %s", out)


if __name__ == "__main__":
    main()
