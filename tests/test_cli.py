"""``python -m backend`` as a real subprocess: bad input, the JSON progress protocol, the real Landsat pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from tests.conftest import REPO_ROOT
from tests.rasters import utm_transform, write_raster


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "backend", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(3, 96, 96), dtype=np.uint8)
    return (
        write_raster(tmp_path / "a.tif", image, transform=utm_transform()),
        write_raster(tmp_path / "b.tif", image[::-1].copy(), transform=utm_transform()),
    )


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_refused(result: subprocess.CompletedProcess[str], out: Path, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    message = result.stderr.lower()
    for fragment in fragments:
        assert fragment.lower() in message, f"{fragment!r} not in {result.stderr!r}"
    assert "traceback" not in message
    assert not out.exists() or not any(out.iterdir())


# -- bad input: each gives a clear message naming the file or value, exit 2, and no output ---------------


def test_missing_file(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    result = run_cli("detect", "--before", tmp_path / "nope.tif", "--after", pair[1], "--out", out)
    assert_refused(result, out, "nope.tif", "does not exist")


def test_not_a_raster(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("these are field notes, not pixels\n")
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", text, "--out", out)
    assert_refused(result, out, "notes.tif", "not a raster")


def test_rasters_that_do_not_overlap(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    far = write_raster(tmp_path / "far.tif", np.ones((3, 20, 20), np.uint8), transform=utm_transform(col=5000))
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", far, "--out", out)
    assert_refused(result, out, "far.tif", "overlap")


def test_raster_without_crs(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    bare = write_raster(tmp_path / "bare.tif", np.ones((3, 20, 20), np.uint8), crs=None)
    out = tmp_path / "out"
    result = run_cli("detect", "--before", bare, "--after", pair[1], "--out", out)
    assert_refused(result, out, "bare.tif", "coordinate reference system")


def test_different_band_counts_point_to_bands(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    undefined = [ColorInterp.gray] + [ColorInterp.undefined] * 3  # four bands, none of them named red/green/blue
    four = write_raster(
        tmp_path / "four.tif", np.ones((4, 96, 96), np.uint8), transform=utm_transform(), colorinterp=undefined
    )
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", four, "--out", out)
    assert_refused(result, out, "--bands")


def test_fewer_than_three_bands_point_to_bands(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    single = write_raster(tmp_path / "gray.tif", np.ones((1, 96, 96), np.uint8), transform=utm_transform())
    out = tmp_path / "out"
    result = run_cli("detect", "--before", single, "--after", single, "--out", out)
    assert_refused(result, out, "gray.tif", "--bands")


def test_all_nodata_overlap(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 96, 96), np.uint8), transform=utm_transform(), nodata=0)
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", empty, "--out", out)
    assert_refused(result, out, "no valid pixels")


def test_zero_size_extent(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "detect", "--before", pair[0], "--after", pair[1], "--out", out, "--extent", "500100,5499500,500100,5499900"
    )
    assert_refused(result, out, "extent", "zero")


def test_missing_model_file(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "detect", "--before", pair[0], "--after", pair[1], "--out", out, "--model", tmp_path / "gone.safetensors"
    )
    assert_refused(result, out, "gone.safetensors")


def test_a_file_that_is_not_a_model(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    fake = tmp_path / "weights.safetensors"
    fake.write_bytes(b"\x00" * 64)
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", pair[1], "--out", out, "--model", fake)
    assert_refused(result, out, "weights.safetensors")


def test_output_folder_that_cannot_be_written(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "out"  # a folder inside a regular file cannot exist, even for root
    result = run_cli("detect", "--before", pair[0], "--after", pair[1], "--out", out)
    assert_refused(result, out, str(out), "--out")


@pytest.mark.parametrize("threshold", ["1.5", "-0.1"])
def test_threshold_outside_zero_one(tmp_path: Path, pair: tuple[Path, Path], threshold: str) -> None:
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", pair[1], "--out", out, "--threshold", threshold)
    assert_refused(result, out, f"threshold={threshold}", "[0, 1]")


def test_json_errors_are_events(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    result = run_cli(
        "detect", "--json-progress", "--before", tmp_path / "nope.tif", "--after", pair[1], "--out", tmp_path / "o"
    )
    assert result.returncode == 2
    stream = events(result.stdout)
    assert stream[0]["event"] == "start" and stream[-1]["event"] == "error"
    assert stream[-1]["kind"] == "RasterError" and "nope.tif" in str(stream[-1]["message"])


# -- the real thing ---------------------------------------------------------------------------------------


def test_json_progress_on_the_real_landsat_pair(tmp_path: Path, samples: Path) -> None:
    landsat = samples / "landsat-pair"
    out = tmp_path / "landsat"
    result = run_cli(
        "detect",
        "--json-progress",
        "--before",
        landsat / "LS20010525.tif",
        "--after",
        landsat / "LS20010626.tif",
        "--out",
        out,
        "--min-area",
        "2000",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stream = events(result.stdout)
    kinds = [e["event"] for e in stream]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    fractions = [float(e["fraction"]) for e in stream if e["event"] == "progress"]  # type: ignore[arg-type]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    done = stream[-1]
    outputs = done["outputs"]
    assert isinstance(outputs, dict)
    for name in ("probability", "mask", "changes", "preview"):
        assert Path(outputs[name]).is_file()
    assert done["tiles"] == 25  # 1000 px at tile 256, overlap 64 -> 5 x 5
    assert isinstance(done["polygons"], int) and done["polygons"] >= 0


def test_doctor_reports_versions() -> None:
    result = run_cli("doctor", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("torch", "open_clip", "rasterio", "GDAL", "qgis.core"):
        assert name in result.stdout
    assert "clip        no CLIP weights in" in result.stdout  # this test's own, empty CLIP folder


def test_models_and_info(tmp_path: Path) -> None:
    from backend.model import build_card, create_model, save_model

    listing = run_cli("models", timeout=120)
    assert listing.returncode == 0
    assert {"changeclip-small", "changeclip-rn50", "changeclip-vit-b16", "zeroshot-vit-b16"} <= {
        line.split()[0] for line in listing.stdout.splitlines() if line.strip()
    }
    model = create_model("changeclip-small")
    path = tmp_path / "small.safetensors"
    save_model(model, build_card(model, threshold=0.4, default_prompts=["building"]), path)
    info = run_cli("info", path, timeout=120)
    assert info.returncode == 0, info.stderr
    card = json.loads(info.stdout)
    assert card["threshold"] == 0.4 and card["default_prompts"] == ["building"] and card["tile_size"] == 256


def test_detect_with_a_saved_model_file(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    from backend.model import build_card, create_model, save_model

    model = create_model("changeclip-small")
    path = tmp_path / "small.safetensors"
    save_model(model, build_card(model, threshold=0.3), path)
    out = tmp_path / "out"
    result = run_cli(
        "detect", "--json-progress", "--before", pair[0], "--after", pair[1], "--out", out, "--model", path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    done = events(result.stdout)[-1]
    assert done["event"] == "done" and done["threshold"] == 0.3 and "small.safetensors" in str(done["model"])


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_cancels_cleanly(tmp_path: Path, signals: int) -> None:
    """The plugin cancels a run with SIGTERM (a second one stops at once): no outputs, exit 130, an error event."""
    from backend.commands.synthetic import generate_pair

    generated = generate_pair(tmp_path / "inputs", size=1536)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = ["detect", "--json-progress", "--before", generated.before, "--after", generated.after, "--out", out]
    process = subprocess.Popen(
        [sys.executable, "-m", "backend", *map(str, args), "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[dict[str, object]] = []
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "progress" and float(seen[-1]["fraction"]) > 0.05:  # type: ignore[arg-type]
            for _ in range(signals):
                process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=120)
    seen.extend(events(rest))
    assert process.returncode == 130
    assert seen[-1]["event"] == "error" and seen[-1]["kind"] == "canceled"
    assert not out.exists()


def test_a_truncated_raster_is_reported_not_a_crash(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    rng = np.random.default_rng(1)
    big = write_raster(
        tmp_path / "big.tif", rng.integers(0, 255, (3, 96, 96), dtype=np.uint8), transform=utm_transform()
    )
    data = big.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not
    out = tmp_path / "out"
    result = run_cli("detect", "--before", pair[0], "--after", cut, "--out", out)
    assert_refused(result, out, "cut.tif")


def test_demo_runs_on_the_generated_pair_and_names_its_weights(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLIPCD_SAMPLES": str(tmp_path / "no-samples")}
    env.pop("CLIPCD_MODEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "backend.demo", "--size", "320", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # each pair gets the shipped model that fits its pixel size, and the log says why
    assert "model: clipcd-default.safetensors, picked because the pixels are 1.00 m, inside" in result.stdout
    assert "model: clipcd-default.safetensors (efficientnet-lite0, trained on levir-cd" in result.stdout
    assert "real Landsat pair not found" in result.stdout and "OSCD saclay_w not found" in result.stdout
    run = tmp_path / "demo" / "synthetic"
    for name in ("probability.tif", "mask.tif", "changes.gpkg", "preview.png"):
        assert (run / name).stat().st_size > 0, name
    assert f"preview: {run / 'preview.png'}" in result.stdout


def test_detect_with_test_time_augmentation(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    """--tta flips averages four passes: a different probability map from one pass; a bad mode is refused."""
    import rasterio

    from backend.model import build_card, create_model, save_model

    model = create_model("changeclip-small")
    path = tmp_path / "small.safetensors"
    save_model(model, build_card(model, threshold=0.3), path)
    maps = []
    for tta in ("none", "flips"):
        out = tmp_path / tta
        args = ["detect", "--json-progress", "--before", pair[0], "--after", pair[1], "--out", out, "--model", path]
        result = run_cli(*args, "--tta", tta, "--device", "cpu")
        assert result.returncode == 0, result.stdout + result.stderr
        with rasterio.open(out / "probability.tif") as source:
            maps.append(source.read(1))
    assert maps[0].shape == maps[1].shape and not np.array_equal(maps[0], maps[1])

    flipped = tmp_path / "flipped.safetensors"  # a card that names flips: detect runs them unless told otherwise
    save_model(model, build_card(model, threshold=0.3, tta="flips"), flipped)
    for asked, expected in (([], maps[1]), (["--tta", "none"], maps[0])):
        out = tmp_path / f"card-{len(asked)}"
        args = ["detect", "--before", pair[0], "--after", pair[1], "--out", out, "--model", flipped, "--device", "cpu"]
        result = run_cli(*args, *asked)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ("test-time augmentation: flips (the model card's" in result.stdout + result.stderr) == (not asked)
        with rasterio.open(out / "probability.tif") as source:
            assert np.array_equal(source.read(1), expected)
    refused = run_cli("detect", "--before", pair[0], "--after", pair[1], "--out", tmp_path / "x", "--tta", "all")
    assert refused.returncode == 2 and "invalid choice: 'all'" in refused.stderr
