"""Import of the published ChangeCLIP checkpoints, proven against the reference's manifest.

training/manifests/*.json list every tensor the reference state dict holds (derived from
dyzy41/ChangeCLIP's code). A checkpoint made of random tensors of those shapes must fill every
backend tensor, leave nothing over, and give a model file that loads and runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.errors import InputError, ModelFileError
from backend.model import load_model, read_card
from training.modelfile.changeclip_checkpoint import (
    backend_name,
    convert,
    detect_family,
    read_checkpoint,
    unused_reason,
)
from training.modelfile.import_changeclip import (
    CONFIGS,
    IncompleteImportError,
    backend_shapes,
    import_changeclip,
    main,
    model_config,
)

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "training" / "manifests"
INTEGER = ("num_batches_tracked", "relative_position_index")


def manifest(config: str) -> dict[str, list[int]]:
    data = json.loads((MANIFESTS / f"{config}.json").read_text(encoding="utf-8"))
    assert data["source"].startswith("dyzy41/ChangeCLIP@") and data["how"]
    return data["tensors"]


def swin_index(window: int) -> torch.Tensor:
    """Swin's relative_position_index, written out as the reference computes it."""
    coords = torch.stack(torch.meshgrid([torch.arange(window), torch.arange(window)], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def reference_state_dict(config: str, *, meta: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the manifest's names and shapes: random values, or meta tensors."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in manifest(config).items():
        if meta:
            dtype = torch.long if name.endswith(INTEGER) else torch.float32
            out[name] = torch.empty(shape, dtype=dtype, device="meta")
        elif name.endswith("relative_position_index"):
            out[name] = swin_index(int(shape[0] ** 0.5))
        elif name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) + 0.5
        else:
            out[name] = torch.randn(shape, generator=g) * 0.02
    return out


# -- fast: names and shapes only -------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_manifest_maps_onto_every_backend_tensor_with_its_shape(config):
    expected = backend_shapes(model_config(config, with_miner=False))
    conversion = convert(reference_state_dict(config, meta=True), expected)
    assert conversion.problems == []
    assert conversion.unmapped == []
    assert conversion.unfilled == []
    assert set(conversion.tensors) == set(expected)
    assert len(conversion.sources) == len(set(conversion.sources.values()))  # one reference tensor per backend one
    everything = set(conversion.sources.values()) | set(conversion.unused)
    assert everything == set(manifest(config))  # each manifest tensor is mapped or unused on purpose
    assert all(name.endswith("relative_position_index") for name in conversion.unused)
    assert detect_family(manifest(config)) == config


def test_manifests_list_buffers_and_the_unlearned_tensors():
    rn, vit = manifest("changeclip-rn50"), manifest("changeclip-vit-b16")
    assert list(rn)[:2] == ["contexts2", "gamma"] and rn["contexts2"] == [1, 1, 13, 512]
    assert rn["backbone.attnpool.positional_embedding"] == [257, 2048]  # input_resolution=512
    assert vit["backbone.positional_embedding"] == [257, 768]  # 256 px / 16
    assert rn["backbone.bn1.num_batches_tracked"] == [] and "backbone.fpn1.2.running_var" in vit
    assert vit["gamma"] == [512] and rn["text_encoder.text_projection"] == [512, 1024]
    assert sum(n.endswith("relative_position_index") for n in rn) == 6
    assert not any("attn_mask" in n or "data_preprocessor" in n or n.endswith(".texts") for n in (*rn, *vit))


def test_renaming_table_examples():
    assert (
        backend_name("decode_head.layer1.up.layer.blocks.1.proj.weight") == "decoder.stages.0.blocks.1.text.out.weight"
    )
    assert backend_name("decode_head.layer3.up.layer.blocks.0.attn.proj.bias") == "decoder.stages.2.blocks.0.proj.bias"
    assert backend_name("decode_head.layer2.conv_relu.0.weight") == "decoder.stages.1.merge.0.weight"
    assert backend_name("backbone.fpn4.0.weight") == "encoder.fpn.3.0.weight"
    assert backend_name("context_decoder.decoder.2.cross_attn.k_proj.weight") == (
        "context_decoder.layers.2.cross_attn.k_proj.weight"
    )
    assert backend_name("channel_att.3.conv_last.conv.bias") == "fusion.se.3.project.0.bias"
    assert backend_name("auxiliary_head.conv_seg.weight") is None
    assert unused_reason("decode_head.layer1.up.layer.blocks.0.attn.relative_position_index")


def test_wrong_shapes_and_a_bad_index_table_are_problems():
    config = "changeclip-vit-b16"
    expected = backend_shapes(model_config(config, with_miner=False))
    reference = reference_state_dict(config, meta=True)
    reference["gamma"] = torch.empty(1024, device="meta")
    index = "decode_head.layer1.up.layer.blocks.0.attn.relative_position_index"
    reference[index] = torch.zeros(49, 49, dtype=torch.long)
    reference["auxiliary_head.conv_seg.weight"] = torch.empty(2, 256, 1, 1, device="meta")
    conversion = convert(reference, expected)
    assert any("gamma -> context_decoder.gamma: shape (1024,)" in p for p in conversion.problems)
    assert any(index in p for p in conversion.problems)
    assert conversion.unmapped == ["auxiliary_head.conv_seg.weight"]
    assert conversion.unfilled == ["context_decoder.gamma"]


class HistoryBuffer:
    """Stands for mmengine's logging buffer in a checkpoint's message_hub; must never be rebuilt."""

    rebuilt = False

    def __setstate__(self, state):
        HistoryBuffer.rebuilt = True


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_mmengine_checkpoint_bookkeeping_is_skipped_without_running_it(tmp_path, capsys):
    path = tmp_path / "best_mIoU_iter_1000.pth"
    sd = {"module.gamma": torch.ones(3), "backbone.conv1.weight": torch.zeros(2, 3)}
    import numpy as np

    torch.save(
        {
            "meta": {"mmengine_version": "0.7.4", "seed": np.int64(3), "dataset_meta": {"classes": ("a", "b")}},
            "state_dict": sd,
            "message_hub": {"log_scalars": {"loss": HistoryBuffer()}, "best": np.float64(0.9)},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        },
        path,
    )
    got = read_checkpoint(path)
    assert set(got) == {"gamma", "backbone.conv1.weight"} and torch.equal(got["gamma"], torch.ones(3))
    assert not HistoryBuffer.rebuilt
    bare = tmp_path / "bare.pth"
    torch.save(sd, bare)
    assert set(read_checkpoint(bare)) == {"gamma", "backbone.conv1.weight"}

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"gamma": Payload()}}, evil)
    with pytest.raises(ModelFileError, match=r"'gamma' is a .*not a tensor"):
        read_checkpoint(evil)
    assert "unpickled!" not in capsys.readouterr().out


def test_unreadable_and_missing_checkpoints_say_what_to_do(tmp_path):
    with pytest.raises(InputError, match="not found; download"):
        read_checkpoint(tmp_path / "none.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"weights_only=True.*re-save just its state dict"):
        read_checkpoint(junk)


def test_cli_refuses_other_configs_and_the_other_backbone(tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"backbone.class_embedding": torch.zeros(768)}}, path)
    out = tmp_path / "m.safetensors"
    assert main([str(path), "--config", "changeclip-rn50", "--out", str(out)]) == 2
    assert "--config changeclip-vit-b16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(path), "--config", "changeclip-small", "--out", str(out)])
    with pytest.raises(InputError, match="must be one of"):
        model_config("changeclip-small", with_miner=False)
    assert not out.exists()


def test_incomplete_checkpoint_fails_with_exit_2_and_lists_what_is_missing(tmp_path, capsys, monkeypatch):
    config = "changeclip-vit-b16"
    reference = {k: v for k, v in reference_state_dict(config, meta=True).items() if not k.startswith("neck.")}
    monkeypatch.setattr("training.modelfile.import_changeclip.read_checkpoint", lambda path: reference)
    out = tmp_path / "m.safetensors"
    with pytest.raises(IncompleteImportError, match="--allow-partial") as caught:
        import_changeclip(tmp_path / "ckpt.pth", config, out)
    unfilled = caught.value.report.conversion.unfilled
    assert unfilled and all(k.startswith("fusion.fpn.") for k in unfilled) and len(unfilled) == 16
    assert main([str(tmp_path / "ckpt.pth"), "--config", config, "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "unfilled backend tensors: fusion.fpn.lateral.0.weight" in printed and not out.exists()


# -- slow: real tensors, the model file, a forward -------------------------------------------------


def _check_import(config: str, tmp_path: Path, *, subprocess_run: bool) -> None:
    reference = reference_state_dict(config)
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"meta": {"iter": 40000}, "state_dict": reference}, checkpoint)
    out = tmp_path / f"{config}.safetensors"
    if subprocess_run:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "training.import_changeclip", str(checkpoint), "--config", config]
        done = subprocess.run(
            [*args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        assert "unfilled backend tensors: none" in done.stdout and "unmapped reference tensors: none" in done.stdout
    else:
        report = import_changeclip(checkpoint, config, out, default_prompts=["building", "road"])
        assert report.written and not report.conversion.unfilled and not report.conversion.unmapped
    del reference
    model, card = load_model(out)
    assert card.config["prompt_source"] == "default" and card.config["miner"] is None
    assert card.training["checkpoint"] == "ckpt.pth" and len(card.training["sha256"]) == 64
    state = model.state_dict()
    fresh = reference_state_dict(config)  # same seed: the values the checkpoint held
    conversion = convert(fresh, {k: tuple(v.shape) for k, v in state.items()})
    assert not conversion.unfilled and not conversion.problems
    for name, value in conversion.tensors.items():
        assert torch.equal(state[name], value.to(state[name].dtype)), name
    if config == "changeclip-vit-b16":  # the class embedding folded into the class token's position
        row = fresh["backbone.positional_embedding"][0] + fresh["backbone.class_embedding"]
        assert torch.equal(state["encoder.visual.positional_embedding"][0], row)
    g = torch.Generator().manual_seed(0)
    image_a, image_b = torch.randn(1, 3, 256, 256, generator=g), torch.randn(1, 3, 256, 256, generator=g)
    with torch.no_grad():
        logits = model(image_a, image_b)
    assert logits.shape == (1, 2, 256, 256) and torch.isfinite(logits).all()
    assert read_card(out).weights_source == "ChangeCLIP checkpoint ckpt.pth"


@pytest.mark.slow
def test_import_rn50_as_a_function(tmp_path):
    _check_import("changeclip-rn50", tmp_path, subprocess_run=False)


@pytest.mark.slow
def test_import_vit_b16_as_a_subprocess(tmp_path):
    _check_import("changeclip-vit-b16", tmp_path, subprocess_run=True)
