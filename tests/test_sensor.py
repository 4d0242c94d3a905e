"""The engine knows the sensor: pixel size in events and summaries, the range warning, bands by name, stacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from backend.errors import InputError
from backend.inference.pipeline import detect
from backend.params import DetectParams
from tests.conftest import REPO_ROOT, SAMPLES
from tests.rasters import utm_transform, write_raster

SHIPPED = REPO_ROOT / "resources" / "models" / "clipcd-default.safetensors"
SACLAY = (SAMPLES or Path("/absent")) / "oscd-release" / "saclay_w"


def scene(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Four uint16 bands (blue, green, red, nir) with a brighter block in the second date."""
    rng = np.random.default_rng(seed)
    bands = rng.integers(800, 1600, size=(4, *shape)).astype(np.uint16)
    if seed:
        bands[:, 20:40, 16:44] += 1500
    return bands


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def pair_with_names(folder: Path, order: list[int], names: list[str] | None, res: float = 10.0) -> tuple[Path, Path]:
    """Both dates with the bands of :func:`scene` in ``order`` (indexes into blue, green, red, nir)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, label in ((0, "before"), (1, "after")):
        data = scene(seed)[order]
        paths.append(write_raster(folder / f"{label}.tif", data, transform=utm_transform(res=res), descriptions=names))
    return paths[0], paths[1]


def probability(out: Path) -> np.ndarray:
    with rasterio.open(out / "probability.tif") as src:
        return src.read(1)


@pytest.mark.parametrize(
    ("names", "sensor_names"),
    [
        (["B02", "B03", "B04", "B08"], "Sentinel-2"),
        (["SR_B2", "SR_B3", "SR_B4", "SR_B5"], "Landsat 8/9"),
    ],
)
def test_bands_by_name_match_bands_by_number(tmp_path: Path, names: list[str], sensor_names: str) -> None:
    # blue, green, red, nir with descriptions: the engine must find red, green, blue by name
    named = pair_with_names(tmp_path / "named", [0, 1, 2, 3], names)
    # the same data as red, green, blue without descriptions, picked by number
    plain = pair_with_names(tmp_path / "plain", [2, 1, 0], None)
    by_name = detect(DetectParams(*named, out_dir=tmp_path / "a", model=SHIPPED, device="cpu", write_preview=False))
    by_number = detect(
        DetectParams(*plain, out_dir=tmp_path / "b", model=SHIPPED, device="cpu", bands=(1, 2, 3), write_preview=False)
    )
    assert by_name.polygons == by_number.polygons
    np.testing.assert_array_equal(probability(tmp_path / "a"), probability(tmp_path / "b"))
    # named explicitly, by code and by colour word, the same again
    for spec, out in (((names[2], names[1], names[0]), "c"), (("red", "green", "blue"), "d")):
        detect(
            DetectParams(*named, out_dir=tmp_path / out, model=SHIPPED, device="cpu", bands=spec, write_preview=False)
        )
        np.testing.assert_array_equal(probability(tmp_path / out), probability(tmp_path / "b"))


def test_unknown_band_name_is_refused_with_the_rasters_names(tmp_path: Path) -> None:
    named = pair_with_names(tmp_path, [0, 1, 2, 3], ["B02", "B03", "B04", "B08"])
    params = DetectParams(*named, out_dir=tmp_path / "out", model=SHIPPED, device="cpu", bands=("B05", "B03", "B02"))
    with pytest.raises(
        InputError, match=r"band 'B05' is not in .*before\.tif, whose bands are 1 'B02', 2 'B03', 3 'B04'"
    ):
        detect(params)
    assert not (tmp_path / "out").exists()


def test_cli_parses_band_names_and_reports_pixel_size_and_the_warning(tmp_path: Path) -> None:
    named = pair_with_names(tmp_path, [0, 1, 2, 3], ["B02 blue", "B03 green", "B04 red", "B08 nir"])
    done = run_cli(
        "detect", "--before", named[0], "--after", named[1], "--out", tmp_path / "out", "--model", SHIPPED,
        "--bands", "B04,B03,B02", "--json-progress", "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = events(done.stdout)
    assert found[0]["event"] == "start" and found[0]["pixel_size_m"] == [10.0, 10.0]
    warnings = [e for e in found if e["event"] == "log" and e["level"] == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["pixel_size_m"] == [10.0, 10.0] and warnings[0]["model_range_m"] == [0.3, 1.5]
    assert "10.0 m" in str(warnings[0]["message"]) and "0.3-1.5 m" in str(warnings[0]["message"])
    text = run_cli(
        "detect",
        "--before",
        named[0],
        "--after",
        named[1],
        "--out",
        tmp_path / "text",
        "--bands",
        "red,green,blue",
        "--model",
        SHIPPED,
    )
    assert text.returncode == 0, text.stderr
    assert "pixels 10.0 m" in text.stderr and "trained on 0.3-1.5 m pixels" in text.stderr


def test_no_warning_inside_the_range(tmp_path: Path) -> None:
    named = pair_with_names(tmp_path, [2, 1, 0], ["red", "green", "blue"], res=0.5)
    done = run_cli("detect", "--before", named[0], "--after", named[1], "--out", tmp_path / "out", "--json-progress")
    assert done.returncode == 0, done.stderr
    found = events(done.stdout)
    assert found[0]["pixel_size_m"] == [0.5, 0.5]
    assert not [e for e in found if e["event"] == "log" and e["level"] == "WARNING"]


def test_info_shows_the_range_and_old_cards_say_unknown(tmp_path: Path) -> None:
    from backend.model import build_card, create_model, save_model

    shipped = run_cli("info", SHIPPED)
    assert shipped.returncode == 0, shipped.stderr
    card = json.loads(shipped.stdout)
    assert card["range"].startswith("0.3-1.5 m (") and card["input_bands"] == "red 665 nm, green 560 nm, blue 490 nm"
    old = tmp_path / "old.safetensors"
    model = create_model("changeclip-small")
    save_model(model, build_card(model), old)
    assert json.loads(run_cli("info", old).stdout)["range"] == "range unknown"


def test_stack_writes_named_bands_on_the_finest_grid(tmp_path: Path) -> None:
    from tests.sentinel import write_date

    write_date(tmp_path / "imgs_1", 1, 60, 80)
    out = tmp_path / "stack.tif"
    done = run_cli("stack", tmp_path / "imgs_1", "--out", out, "--bands", "B04,B03,B02,B08,B11")
    assert done.returncode == 0, done.stderr
    with rasterio.open(out) as src:
        assert src.count == 5 and src.shape == (60, 80) and src.dtypes[0] == "uint16"
        assert src.descriptions == ("B04 red", "B03 green", "B02 blue", "B08 nir", "B11")
    missing = run_cli("stack", tmp_path / "imgs_1", "--out", tmp_path / "x.tif", "--bands", "B09")
    assert missing.returncode == 2 and "has no band B09" in missing.stderr
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.skipif(not SACLAY.is_dir(), reason="../shared/data/oscd-release/saclay_w is absent")
def test_saclay_west_stacked_and_detected(tmp_path: Path) -> None:
    for date in (1, 2):
        done = run_cli(
            "stack", SACLAY / f"imgs_{date}", "--out", tmp_path / f"d{date}.tif", "--bands", "B02,B03,B04,B08"
        )
        assert done.returncode == 0, done.stderr
    found = run_cli(
        "detect", "--before", tmp_path / "d1.tif", "--after", tmp_path / "d2.tif", "--out", tmp_path / "out",
        "--model", SHIPPED, "--json-progress",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    logs = [e for e in events(found.stdout) if e["event"] == "log"]
    assert any("by name" in str(e["message"]) and "B04 red" in str(e["message"]) for e in logs)
    assert [e for e in logs if e["level"] == "WARNING" and e.get("model_range_m") == [0.3, 1.5]]
    from PIL import Image

    label = np.asarray(Image.open(SACLAY / "cm" / "cm.png"))
    with rasterio.open(tmp_path / "out" / "mask.tif") as mask, rasterio.open(tmp_path / "d1.tif") as first:
        assert mask.shape == label.shape[:2] == first.shape
        assert mask.transform == first.transform


@pytest.mark.parametrize(
    ("tags", "s2_offset", "expected"),
    [
        ({}, None, [0.1 / 0.3, 0.2 / 0.3, 1.0]),  # DN / 10000 / white
        ({"BOA_ADD_OFFSET": "-1000"}, None, [0.0, 0.1 / 0.3, 1.0]),  # (DN - 1000) / 10000 / white
        ({}, -1000.0, [0.0, 0.1 / 0.3, 1.0]),  # the option, when the metadata is silent
    ],
)
def test_the_cards_sensor_rule_scales_raw_bands(
    tmp_path: Path, tags: dict[str, str], s2_offset: float | None, expected: list[float]
) -> None:
    from backend.raster.io import RasterPair

    dn = np.array([[1000, 2000, 5000]], dtype=np.uint16).repeat(3, axis=0).reshape(3, 1, 3)
    names = ["B04", "B03", "B02"]
    paths = [
        write_raster(tmp_path / f"{n}.tif", dn, transform=utm_transform(), descriptions=names, tags=tags)
        for n in ("a", "b")
    ]
    card_rule = {"rule": "sentinel-2", "white": 0.3}
    with RasterPair(*paths, input_stretch=card_rule, s2_offset=s2_offset) as pair:
        image_a, _, valid = pair.read(pair_window(pair))
    assert valid.all()
    np.testing.assert_allclose(image_a[0, 0], expected, atol=1e-6)


def test_8_bit_rasters_stay_pictures_under_a_sensor_rule(tmp_path: Path) -> None:
    from backend.raster.io import RasterPair

    data = np.array([[0, 51, 255]], dtype=np.uint8).repeat(3, axis=0).reshape(3, 1, 3)
    paths = [write_raster(tmp_path / f"{n}.tif", data, transform=utm_transform()) for n in ("a", "b")]
    with RasterPair(*paths, input_stretch={"rule": "sentinel-2", "white": 0.3}) as pair:
        image_a, _, _ = pair.read(pair_window(pair))
    np.testing.assert_allclose(image_a[0, 0], [0.0, 0.2, 1.0], atol=1e-6)


def pair_window(pair: object) -> object:
    from rasterio.windows import Window

    grid = pair.grid  # type: ignore[attr-defined]
    return Window(0, 0, grid.width, grid.height)
