"""``clip add``: a local CLIP file is checked, placed and recorded; then used by a ChangeCLIP config."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from backend.clip import store
from backend.clip.manage import add
from backend.errors import InputError, ModelFileError
from backend.model import create_model


def test_an_added_file_loads_lists_and_serves_a_changeclip_config(
    tiny_clip: Path, tiny_arch: Path, private_clip_folder: Path
) -> None:
    weights = add(tiny_clip, str(tiny_arch), "tiny-clip")
    assert weights.arch == "clipcd-small" and weights.source == "added"
    assert weights.path.parent == private_clip_folder and weights.origin == str(tiny_clip.resolve())
    assert store.find("tiny-clip") == weights
    model = create_model("changeclip-small", pretrained="tiny-clip")
    saved = torch.load(tiny_clip, weights_only=True)
    assert torch.equal(model.state_dict()["text_encoder.token_embedding.weight"], saved["token_embedding.weight"])
    assert model.weights_source == "clipcd-small:tiny-clip"


def test_a_copy_is_made_when_a_link_is_impossible(
    tiny_clip: Path, tiny_arch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_: object) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    weights = add(tiny_clip, str(tiny_arch), "tiny-copy")
    assert weights.path.read_bytes() == tiny_clip.read_bytes() and weights.path.stat().st_ino != tiny_clip.stat().st_ino


def test_a_file_the_catalogue_does_not_know_needs_its_architecture(tiny_clip: Path) -> None:
    with pytest.raises(InputError, match="--arch"):
        add(tiny_clip)
    with pytest.raises(InputError, match="not an open_clip model"):
        add(tiny_clip, "ViT-Q-99")
    assert store.installed() == {}


def test_a_file_of_another_architecture_is_refused(tiny_clip: Path, private_clip_folder: Path) -> None:
    with pytest.raises(ModelFileError, match="do not match the model"):
        add(tiny_clip, "RN50")
    assert list(private_clip_folder.iterdir()) == []


class _Hostile:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch HACKED",))


def test_a_hostile_pickle_is_refused_without_running_it(
    tmp_path: Path, tiny_arch: Path, private_clip_folder: Path
) -> None:
    bad = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    torch.save({"visual.proj": torch.zeros(2), "payload": _Hostile()}, bad)
    with pytest.raises(ModelFileError, match="not a tensors-only checkpoint"):
        add(bad, str(tiny_arch))
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Hostile()))
    with pytest.raises(ModelFileError, match="not a tensors-only checkpoint"):
        add(plain, str(tiny_arch))
    assert not Path("HACKED").exists() and not (tmp_path / "HACKED").exists()
    assert list(private_clip_folder.iterdir()) == []


def test_training_takes_an_added_name_for_pretrained(tiny_clip: Path, tiny_arch: Path, tmp_path: Path) -> None:
    from tests.training.tinyrun import kept_threads, make_pairs, write_config
    from training.fit import train

    add(tiny_clip, str(tiny_arch), "tiny-clip")
    root = make_pairs(tmp_path / "data")
    config = write_config(tmp_path / "tiny.yaml", root, model={"config": "changeclip-small"}, train={"iterations": 1})
    run = tmp_path / "run"
    with kept_threads(1):
        code = train.main(["--config", str(config), "--out", str(run), "--device", "cpu", "--pretrained", "tiny-clip"])
    assert code == 0
    assert (run / "last.safetensors").is_file()
    assert '"pretrained": "tiny-clip"' in (run / "config.json").read_text(encoding="utf-8")
