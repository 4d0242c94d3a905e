"""training.train end to end: a tiny run from argv, resume, overfitting real crops, and torchrun.

The runs train ``siamese-lite0`` (random encoder unless stated) on generated 64² pairs in
``tmp_path`` (:mod:`tests.training.tinyrun`), on the CPU with one thread.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.model import load_model
from tests.conftest import REPO_ROOT
from tests.training.tinyrun import kept_threads, make_pairs, metrics_rows, read_json, write_config
from training.evaluation import evaluate
from training.fit import train

RUN_FILES = ("last.safetensors", "best.safetensors", "last.state.pt", "metrics.csv", "run.json", "config.json")
#: Four LEVIR-CD crops with change in them (../shared/data/levir-cd-crops).
OVERFIT_CROPS = ["test_2_0000_0000", "test_121_0768_0256", "test_55_0256_0000", "train_36_0512_0512"]


@pytest.fixture(autouse=True)
def _threads() -> Iterator[None]:
    with kept_threads(1):
        yield


def _train(config: Path, out: Path, *extra: str) -> None:
    assert train.main(["--config", str(config), "--out", str(out), "--device", "cpu", *extra]) == 0


def _lrs(run_dir: Path) -> dict[int, float]:
    """Learning rate logged per iteration (validation rows have none)."""
    return {int(r["iteration"]): float(r["lr"]) for r in metrics_rows(run_dir) if r["lr"]}


def test_three_iterations_from_argv_write_a_run_that_evaluate_and_the_backend_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_pairs(tmp_path / "data")
    config = write_config(tmp_path / "tiny.yaml", root)
    run = tmp_path / "run"
    _train(config, run)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert all((run / name).is_file() for name in RUN_FILES), sorted(p.name for p in run.iterdir())
    assert printed["run_dir"] == str(run) and printed["name"] == "tiny"
    assert read_json(run / "config.json")["train"]["iterations"] == 3
    summary = read_json(run / "run.json")
    assert summary["best"]["iteration"] == 3 and summary["world_size"] == 1
    assert summary["validation"]["per_source"], "the validation source was not scored"
    assert [int(r["iteration"]) for r in metrics_rows(run) if r["loss"]] == [1, 2, 3]

    model, card = load_model(run / "last.safetensors")
    assert model.config.name == "siamese-lite0"
    assert card.training["iterations"] == 3 and card.training["config"] == "tiny"

    code = evaluate.main(
        ["--model", str(run / "last.safetensors"), "--data-root", str(root), "--dataset", "folder",
         "--split", "test", "--protocol", "tiles", "--device", "cpu", "--json"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["protocol"] == "tiles"
    assert 0.0 <= report["metrics"]["f1"] <= 1.0
    assert sum(report["metrics"][k] for k in ("tn", "fp", "fn", "tp")) == 3 * 64 * 64


def test_zoom_date_swaps_and_radiometric_changes_train(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "data")
    extra = {"iterations": 2, "augment": True, "zoom": [0.75, 1.5], "swap_dates": 0.5, "radiometric": 0.25}
    config = write_config(tmp_path / "tiny.yaml", root, train=extra)
    _train(config, tmp_path / "run")
    assert read_json(tmp_path / "run" / "config.json")["train"]["zoom"] == [0.75, 1.5]
    assert read_json(tmp_path / "run" / "run.json")["best"]["iteration"] == 2


def test_mined_names_follow_swapped_dates() -> None:
    names = ([["road"], ["tree"]], [["building"], ["water"]])
    assert train._swap_names(names, [True, False]) == ([["building"], ["tree"]], [["road"], ["water"]])
    assert train._swap_names(None, [True]) is None


def test_bad_config_is_exit_code_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_pairs(tmp_path / "data", count=1)
    config = write_config(tmp_path / "tiny.yaml", root)
    assert train.main(["--config", str(config), "--out", str(tmp_path / "run"), "train.iteratons=3"]) == 2
    assert "iteratons" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_continues_at_the_next_iteration_with_the_same_learning_rate(tmp_path: Path) -> None:
    root = make_pairs(tmp_path / "data")
    config = write_config(tmp_path / "tiny.yaml", root, train={"iterations": 4, "warmup": 1})
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    _train(config, whole)
    _train(config, parted, "train.stop_after=2")

    import torch

    state = torch.load(parted / "last.state.pt", weights_only=True)
    assert state["iteration"] == 2
    assert not (parted / "run.json").exists(), "a stopped run must not look finished"
    assert sorted(_lrs(parted)) == [1, 2]

    _train(config, parted, "--resume", str(parted))
    assert torch.load(parted / "last.state.pt", weights_only=True)["iteration"] == 4
    rows = [int(r["iteration"]) for r in metrics_rows(parted) if r["loss"]]
    assert rows == [1, 2, 3, 4], "the resumed run must append iterations 3 and 4 to the first two"
    summary = read_json(parted / "run.json")
    assert summary["best"]["iteration"] == 4
    assert summary["samples_per_second"] > 0

    uninterrupted, resumed = _lrs(whole), _lrs(parted)
    assert resumed == pytest.approx(uninterrupted, rel=1e-9, abs=0.0)
    assert resumed[3] != resumed[2], "the schedule should still be decaying at iteration 3"


@pytest.mark.slow
@pytest.mark.samples
def test_a_tiny_config_overfits_four_real_crops(samples: Path, tmp_path: Path) -> None:
    crops = samples / "levir-cd-crops"
    if not all((crops / "label" / f"{stem}.png").is_file() for stem in OVERFIT_CROPS):
        pytest.skip(f"{crops} lacks the LEVIR-CD crops {OVERFIT_CROPS}")
    source = {"dataset": "folder", "root": "levir-cd-crops", "only": OVERFIT_CROPS}
    config = write_config(
        tmp_path / "overfit.yaml",
        samples,
        model={"config": "siamese-lite0", "encoder_weights": "imagenet"},
        data={"crop": 128, "train": [source], "val": [{**source, "protocol": "tiles"}]},
        train={"iterations": 150, "batch": 4, "lr": 3e-3, "warmup": 5},
        eval={"log_every": 25, "batch": 4},
    )
    _train(config, tmp_path / "run")
    summary = read_json(tmp_path / "run" / "run.json")
    validation = summary["validation"]
    assert validation["iteration"] == 150 and validation["threshold"] == 0.5
    assert validation["f1"] > 0.9, f"F1 {validation['f1']:.3f} on the crops it trained on"
    losses = [float(r["loss"]) for r in metrics_rows(tmp_path / "run") if r["loss"]]
    assert losses[-1] < 0.5 * losses[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("effective_batch", [0, 8], ids=["plain", "accumulated"])
def test_torchrun_two_gloo_processes_end_with_identical_weights(tmp_path: Path, effective_batch: int) -> None:
    root = make_pairs(tmp_path / "data", count=5)  # 4 training pairs: one batch of 2 per rank
    config = write_config(tmp_path / "tiny.yaml", root, train={"iterations": 2, "effective_batch": effective_batch})
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "training.train", "--config", str(config), "--out", str(run), "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = read_json(run / "run.json")
    assert summary["world_size"] == 2
    first, second = summary["rank_checksums"]
    assert first == second, "the ranks' weights differ: gradients were not averaged"
    accumulate = 2 if effective_batch else 1
    assert f"2 x {accumulate} x 2 crops" in done.stderr
