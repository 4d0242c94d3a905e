"""training.evaluate: the three protocols, the library call, the CLI, and detect-vs-evaluate agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from torch import nn

from backend.model import ModelCard, build_card, create_model, save_model
from backend.model.modelfile import FORMAT_VERSION
from tests.conftest import REPO_ROOT, _samples
from tests.rasters import utm_transform, write_raster
from training.datasets import get_dataset
from training.evaluation.evaluate import evaluate, main
from training.evaluation.metrics import ConfusionMatrix
from training.evaluation.predict import PROTOCOLS, Job, run_jobs


def _card(threshold: float = 0.5, tile_size: int = 64, overlap: int = 16) -> ModelCard:
    return ModelCard(
        format_version=FORMAT_VERSION,
        config={},
        backbone="test",
        weights_source="random",
        bands=["red", "green", "blue"],
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        tile_size=tile_size,
        overlap=overlap,
        default_prompts=[],
        vocabulary=[],
        threshold=threshold,
        software_version="test",
    )


class DifferenceModel(nn.Module):
    """Change logit = steep function of the mean absolute difference of the two dates: an oracle."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(40.0))

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        diff = (image_a - image_b).abs().mean(dim=1, keepdim=True)  # in normalised units (std 0.25)
        return self.scale * (diff - 1.0)


class NeighbourhoodModel(nn.Module):
    """A seeded random conv net: its logits depend on the context, so tiling changes them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Conv2d(6, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 1, 9, padding=4))

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(torch.cat([image_a, image_b], dim=1))
        return out


def _pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two uint8 (H, W, 3) images that differ exactly inside a few rectangles, and the 0/255 label."""
    rng = np.random.default_rng(seed)
    before = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    after = before.copy()
    label = np.zeros((height, width), dtype=np.uint8)
    for _ in range(3):
        r, c = int(rng.integers(0, height - 20)), int(rng.integers(0, width - 20))
        after[r : r + 17, c : c + 19] = 230
        label[r : r + 17, c : c + 19] = 255
    return before, after, label


def _write_folder(root: Path, pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (before, after, label) in enumerate(pairs):
        Image.fromarray(before).save(root / "A" / f"p{i}.png")
        Image.fromarray(after).save(root / "B" / f"p{i}.png")
        Image.fromarray(label).save(root / "label" / f"p{i}.png")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _write_folder(root, [_pair(80, 100, 0), _pair(80, 100, 1), _pair(64, 70, 2)])
    return root


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_oracle_scores_perfectly_under_every_protocol(folder: Path, protocol: str) -> None:
    dataset = get_dataset("folder", folder, "test")
    result = evaluate(DifferenceModel(), _card(), dataset, protocol, "cpu", batch_size=3)
    assert result["images"] == 3 and result["protocol"] == protocol
    metrics = result["metrics"]
    assert metrics["f1"] == 1.0 and metrics["iou"] == 1.0 and metrics["oa"] == 1.0
    assert metrics["tp"] == sum(int((np.asarray(Image.open(p)) > 0).sum()) for p in (folder / "label").iterdir())


def test_sliding_equals_whole_image_when_one_tile_covers_it(folder: Path) -> None:
    dataset = get_dataset("folder", folder, "test")
    card = _card(threshold=0.5, tile_size=128, overlap=32)  # every image fits in one 128 tile
    model = NeighbourhoodModel()
    results = {p: evaluate(model, card, dataset, p, "cpu", sweep=(0.3, 0.7)) for p in ("tiles", "sliding")}
    # Only the padding differs (reflect to 32 for tiles, zeros to 128 for sliding): near the
    # bottom/right edges. Away from them both see the same pixels, so the counts nearly agree.
    tiles, sliding = results["tiles"]["metrics"], results["sliding"]["metrics"]
    total = sum(tiles[k] for k in ("tp", "fp", "fn", "tn"))
    assert abs(tiles["tp"] + tiles["fp"] - sliding["tp"] - sliding["fp"]) < 0.1 * total
    assert [s["threshold"] for s in results["tiles"]["sweep"]] == [0.3, 0.7]


def test_sliding_blends_logits_like_the_engine(folder: Path) -> None:
    """A constant-logit model stitches to the same constant: the mask is all or nothing."""

    class Constant(nn.Module):
        def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
            return torch.full_like(image_a[:, :1], 0.5)  # sigmoid(0.5) = 0.622

    dataset = get_dataset("folder", folder, "test")
    low = evaluate(Constant(), _card(tile_size=32, overlap=8), dataset, "sliding", "cpu", threshold=0.62)
    high = evaluate(Constant(), _card(tile_size=32, overlap=8), dataset, "sliding", "cpu", threshold=0.63)
    assert low["metrics"]["recall"] == 1.0 and low["metrics"]["tn"] == 0
    assert high["metrics"]["tp"] == 0 and high["metrics"]["fp"] == 0


def test_evaluate_restores_train_mode_and_checks_arguments(folder: Path) -> None:
    dataset = get_dataset("folder", folder, "test")
    model = DifferenceModel().train()
    evaluate(model, _card(), dataset, "tiles", "cpu")
    assert model.training
    from backend.errors import InputError

    with pytest.raises(InputError, match="protocol"):
        evaluate(model, _card(), dataset, "whole", "cpu")
    with pytest.raises(InputError, match="threshold"):
        evaluate(model, _card(), dataset, "tiles", "cpu", threshold=1.5)


def test_run_jobs_batches_across_images_and_keeps_order() -> None:
    calls: list[int] = []

    class Recorder:
        def infer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            calls.append(a.shape[0])
            return a[:, 0] - b[:, 0]

    def job(value: float, count: int, size: int = 4) -> Job:
        patches = [np.full((3, size, size), value, np.float32) for _ in range(count)]
        zeros = [np.zeros_like(p) for p in patches]
        return Job(patches, zeros, lambda logits: lambda t: np.stack(logits), key=value)

    jobs = [job(1, 2), job(2, 3), job(3, 1, size=8), job(4, 2, size=8)]
    done = list(run_jobs(Recorder(), jobs, batch_size=4))  # type: ignore[arg-type]
    assert [j.key for j, _ in done] == [1, 2, 3, 4]
    assert [float(mask(0.5)[0, 0, 0]) for _, mask in done] == [1, 2, 3, 4]
    assert calls == [4, 1, 3]  # 2+2 of size 4, then the last size-4 patch, then 1+2 of size 8


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("changeclip-small", prompt_source="default")
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_model(model, build_card(model, threshold=0.5), path)
    return path


def test_cli_json(folder: Path, small_model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", str(small_model_file), "--data-root", str(folder), "--dataset", "folder", "--split", "test"]
    assert main([*argv, "--protocol", "tiles", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"dataset", "split", "protocol", "model", "images", "threshold", "metrics"} <= set(report)
    assert report["images"] == 3 and report["dataset"] == "folder" and report["threshold"] == 0.5
    assert set(report["metrics"]) == {"oa", "iou", "f1", "precision", "recall", "tp", "fp", "fn", "tn"}
    assert main([*argv, "--protocol", "tiles", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "IoU" in table and "Precision" in table and "3 images" in table


def test_cli_bad_input_exits_2(folder: Path, small_model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-root", str(folder), "--split", "test", "--protocol", "tiles", "--device", "cpu"]
    assert main(["--model", str(small_model_file), "--dataset", "levir", *base]) == 2
    assert "levir-cd" in capsys.readouterr().err  # the options are listed
    assert main(["--model", str(folder / "none.safetensors"), "--dataset", "folder", *base]) == 2
    assert "none.safetensors" in capsys.readouterr().err


# -- detect vs evaluate (issue 7, section 2) ---------------------------------------------------------

CROPS = (("test_1", 0, 576), ("test_2", 0, 192))  # (image, row, col) of 320 x 448 LEVIR-CD crops


def _agreement_pairs() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Crops of real LEVIR-CD test tiles when ../shared/data is present, generated pairs otherwise."""
    samples = _samples()
    if samples is None or not (samples / "levir-cd" / "A" / "test_1.png").is_file():
        return [_pair(320, 448, 10), _pair(320, 448, 11)]
    pairs = []
    for name, row, col in CROPS:
        window = np.s_[row : row + 320, col : col + 448]
        load = [np.asarray(Image.open(samples / "levir-cd" / sub / f"{name}.png")) for sub in ("A", "B", "label")]
        pairs.append((load[0][window][..., :3], load[1][window][..., :3], load[2][window]))
    return pairs


def test_detect_and_sliding_evaluate_agree(tmp_path: Path) -> None:
    """``backend detect`` on GeoTIFF copies scores within 0.5 F1 points of ``evaluate --protocol sliding``."""
    pairs = _agreement_pairs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = create_model("changeclip-small", prompt_source="default")
    # A random model's change probability hovers near 0.5: threshold at its median on the first
    # pair, so the mask is half change and every tiling or input difference would show.
    first = torch.from_numpy(np.stack([p.transpose(2, 0, 1) for p in pairs[0][:2]]).astype(np.float32) / 255)
    mean, std = torch.tensor(model.config.mean).view(3, 1, 1), torch.tensor(model.config.std).view(3, 1, 1)
    with torch.inference_mode():
        logits = model(((first[0] - mean) / std)[None, :, :256, :256], ((first[1] - mean) / std)[None, :, :256, :256])
    threshold = float(torch.sigmoid(logits[:, 1] - logits[:, 0]).median())
    model_file = tmp_path / "model.safetensors"
    save_model(model, build_card(model, threshold=threshold), model_file)

    _write_folder(tmp_path / "png", pairs)
    processes = []
    for i, (before, after, _) in enumerate(pairs):
        tifs = []
        for tag, image in (("before", before), ("after", after)):  # an illustrative UTM grid at 0.5 m
            tifs.append(
                write_raster(tmp_path / f"p{i}_{tag}.tif", image.transpose(2, 0, 1), transform=utm_transform(res=0.5))
            )
        args = ["--before", tifs[0], "--after", tifs[1], "--out", tmp_path / f"out{i}", "--model", model_file]
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "backend", "detect", *map(str, args), "--device", "cpu", "--no-preview"],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )

    dataset = get_dataset("folder", tmp_path / "png", "test")
    from backend.model import load_model

    loaded, card = load_model(model_file)
    sliding = evaluate(loaded, card, dataset, "sliding", "cpu")["metrics"]

    detected = ConfusionMatrix()
    for i, process in enumerate(processes):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        with rasterio.open(tmp_path / f"out{i}" / "mask.tif") as src:
            mask = src.read(1)
        assert set(np.unique(mask)) <= {0, 1}
        detected.update(mask, (pairs[i][2] > 0).astype(np.uint8))
    engine = detected.as_dict()
    assert 0.05 < engine["f1"] < 0.95  # neither all nor nothing: the comparison means something
    assert abs(engine["f1"] - sliding["f1"]) * 100 <= 0.5, (engine, sliding)
    assert engine["tp"] + engine["fp"] == pytest.approx(sliding["tp"] + sliding["fp"], rel=0.01)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(folder: Path) -> None:
    """On CUDA (bf16 autocast, as detect runs) every protocol still scores the oracle perfectly."""
    dataset = get_dataset("folder", folder, "test")
    for protocol in PROTOCOLS:
        result = evaluate(DifferenceModel(), _card(), dataset, protocol, "cuda", batch_size=4)
        assert result["metrics"]["f1"] == 1.0, protocol
    pred, target = torch.randint(0, 2, (2, 64, 64)), torch.randint(0, 2, (2, 64, 64))
    on_gpu = ConfusionMatrix().update(pred.cuda(), target.cuda()).as_dict()
    assert on_gpu == ConfusionMatrix().update(pred.numpy(), target.numpy()).as_dict()
