"""training.mine_prompts and training.prompts.prompt_cache on a generated 2-image tree with a tiny random CLIP."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from backend.errors import InputError
from backend.model.config import ClipSpec
from backend.model.prompts import CHANGECLIP_CLASSES
from backend.model.weights import build_clip
from training.prompts.mine_prompts import build_miner, main, mine_dataset
from training.prompts.prompt_cache import (
    find_prompt_cache,
    load_prompt_cache,
    read_prompt_cache,
    vocabulary_sha,
    write_prompt_cache,
)

# A CLIP small enough to build in well under a second; vocab_size must be the tokenizer's.
TINY_CLIP = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config JSON, weights .safetensors) of a seeded random tiny CLIP."""
    folder = tmp_path_factory.mktemp("clip")
    config = folder / "tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = build_clip(ClipSpec(model="tiny-clip", cfg=TINY_CLIP))
    weights = folder / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    return config, weights


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder dataset with a test split of two pairs of different sizes."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name, (h, w) in (("t1", (40, 48)), ("t2", (64, 64))):
        for sub in ("A", "B", "label"):
            (root / "test" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "test" / "A" / f"{name}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "test" / "B" / f"{name}.png")
        Image.fromarray(np.zeros((h, w), dtype=np.uint8)).save(root / "test" / "label" / f"{name}.png")
    return root


def _argv(tree: Path, tiny_clip: tuple[Path, Path], *extra: str) -> list[str]:
    config, weights = tiny_clip
    return ["--data-root", str(tree), "--dataset", "folder", "--split", "test", "--miner", str(config),
            "--pretrained", str(weights), "--device", "cpu", *extra]  # fmt: skip


def test_cli_writes_a_relative_cache(tree: Path, tiny_clip: tuple[Path, Path], capsys) -> None:
    assert main(_argv(tree, tiny_clip, "--top-k", "5")) == 0
    path = find_prompt_cache(tree, "test")
    assert path == tree / "clipcd-prompts-test.json"
    assert capsys.readouterr().out.strip() == str(path)
    text = path.read_text()
    assert str(tree) not in text and str(tiny_clip[1].parent) not in text  # no absolute paths
    document = json.loads(text)
    assert document["version"] == 1 and document["top_k"] == 5
    assert document["miner"] == "tiny-clip" and document["pretrained"] == "tiny-clip.safetensors"
    assert document["vocabulary_sha"] == vocabulary_sha(CHANGECLIP_CLASSES)
    names = load_prompt_cache(path, vocabulary=CHANGECLIP_CLASSES)
    assert sorted(names) == ["test/A/t1.png", "test/A/t2.png"]
    for a, b in names.values():
        assert len(a) == len(b) == 5 and len(set(a)) == 5
        assert set(a) <= set(CHANGECLIP_CLASSES) and set(b) <= set(CHANGECLIP_CLASSES)
    assert find_prompt_cache(tree, "val") is None


def test_mining_is_per_image_and_batch_independent(tree: Path, tiny_clip: tuple[Path, Path]) -> None:
    from training.datasets import get_dataset

    config, weights = tiny_clip
    miner = build_miner(str(config), str(weights), top_k=9)
    dataset = get_dataset("folder", tree, "test")
    one = mine_dataset(miner, dataset, batch_size=1)
    many = mine_dataset(miner, dataset, batch_size=16)
    assert one == many
    single = miner.mine(dataset[1]["image_b"][None])[0]  # date B of the second pair, alone
    assert many["test/A/t2.png"][1] == single


def test_offline_tag_names_the_local_file_option(
    tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # "openai" is the catalogue's OpenAI file: its server is down
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CLIPCD_CLIP_MIRROR", f"http://127.0.0.1:{probe.getsockname()[1]}")
    argv = ["--data-root", str(tree), "--dataset", "folder", "--split", "test", "--device", "cpu"]
    assert main([*argv, "--pretrained", "openai"]) == 2  # the default miner, ViT-B-16-quickgelu
    err = capsys.readouterr().err
    assert "clip get openai-vit-b-16" in err and "clip add FILE" in err and "cannot reach" in err
    assert "the path of a ViT-B-16-quickgelu file" in err
    assert find_prompt_cache(tree, "test") is None


def test_unknown_tag_and_bad_dataset_exit_2(tree: Path, tiny_clip: tuple[Path, Path], capsys) -> None:
    config, _ = tiny_clip
    argv = ["--data-root", str(tree), "--split", "test", "--device", "cpu"]
    assert main([*argv, "--dataset", "folder", "--miner", str(config), "--pretrained", "openai"]) == 2
    assert "the path of a tiny-clip file" in capsys.readouterr().err
    assert main([*argv, "--dataset", "nowhere", "--miner", str(config)]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cache_round_trip_and_refusals(tmp_path: Path) -> None:
    names = {"b.png": (["road"], ["building", "road"]), "a.png": (["tree"], ["tree"])}
    path = write_prompt_cache(
        tmp_path / "c.json", names, miner="m", pretrained="p", top_k=2, vocabulary=["road", "tree", "building"]
    )
    assert load_prompt_cache(path) == names
    assert list(read_prompt_cache(path)["names"]) == ["a.png", "b.png"]  # sorted: rewrites are stable
    assert not list(tmp_path.glob("*.partial*"))
    with pytest.raises(InputError, match="another vocabulary"):
        load_prompt_cache(path, vocabulary=CHANGECLIP_CLASSES)
    with pytest.raises(InputError, match="absolute"):
        write_prompt_cache(tmp_path / "d.json", {"/abs/a.png": ([], [])}, miner="m", pretrained="p", top_k=1,
                           vocabulary=[])  # fmt: skip
    document = json.loads(path.read_text())
    for broken, message in (({**document, "version": 2}, "version"), ({"version": 1}, "names")):
        path.write_text(json.dumps(broken))
        with pytest.raises(InputError, match=message):
            load_prompt_cache(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="mine_prompts"):
        load_prompt_cache(path)
    with pytest.raises(InputError, match="not found"):
        load_prompt_cache(tmp_path / "missing.json")
