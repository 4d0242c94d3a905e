import socket

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from backend.errors import ModelFileError
from backend.model import create_model
from backend.model.weights import read_state_dict, read_torchscript_tensors
from tests.model.conftest import TINY_RN, TINY_VIT, pair, tiny_overrides

CFG = {"rn": TINY_RN, "vit": TINY_VIT}


def _save(clip, path, fmt):
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    elif fmt == "bin":
        torch.save({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    else:  # an OpenAI-style JIT archive
        image = torch.zeros(1, 3, 64, 64)
        text = torch.zeros(1, 77, dtype=torch.long)
        traced = torch.jit.trace(clip, (image, text), strict=False, check_trace=False)
        torch.jit.save(traced, str(path))


def _load_towers(model, clip):
    model.encoder.visual.load_state_dict(clip.visual.state_dict())
    text = {k: v for k, v in clip.state_dict().items() if not k.startswith(("visual.", "logit_"))}
    result = model.text_encoder.load_state_dict(text, strict=False)
    assert result.missing_keys == ["contexts"] and not result.unexpected_keys


@pytest.mark.parametrize(("family", "fmt"), [("vit", "safetensors"), ("rn", "bin"), ("vit", "jit"), ("rn", "jit")])
def test_local_checkpoint_loads_like_the_in_memory_model(tmp_path, family, fmt):
    torch.manual_seed(11)
    clip = open_clip.CLIP(**CFG[family]).eval()
    path = tmp_path / f"clip.{'pt' if fmt == 'jit' else fmt}"
    _save(clip, path, fmt)

    torch.manual_seed(0)
    from_file = create_model("changeclip-small", pretrained=str(path), **tiny_overrides(family))
    torch.manual_seed(0)
    in_memory = create_model("changeclip-small", **tiny_overrides(family))
    image_a, image_b = pair(1, 256, 256)
    with torch.no_grad():
        random_towers = in_memory(image_a, image_b)
        _load_towers(in_memory, clip)
        in_memory._text_cache.clear()
        expected = in_memory(image_a, image_b)
        got = from_file(image_a, image_b)
    assert not torch.equal(random_towers, expected)  # the checkpoint really replaced the towers
    assert torch.equal(got, expected)
    assert from_file.weights_source == path.name


def test_torchscript_reader_matches_torch_jit(tmp_path):
    torch.manual_seed(2)
    clip = open_clip.CLIP(**TINY_VIT).eval()
    path = tmp_path / "clip.pt"
    _save(clip, path, "jit")
    mine = read_torchscript_tensors(path)
    reference = torch.jit.load(str(path)).state_dict()
    assert set(reference) <= set(mine)
    for key, value in reference.items():
        assert torch.equal(mine[key], value), key


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"visual.x": Payload()}, path)
    with pytest.raises(ModelFileError, match="tensors-only"):
        read_state_dict(path)


def test_mismatched_checkpoint_is_refused(tmp_path):
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_VIT)
    tensors = {k: v.contiguous() for k, v in clip.state_dict().items()}
    tensors["visual.proj"] = torch.zeros(3, 3)
    del tensors["ln_final.weight"]
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(ModelFileError, match=r"1 missing .*ln_final.weight.*visual.proj: file \(3, 3\)"):
        create_model("changeclip-small", pretrained=str(path), **tiny_overrides("vit"))


def test_unknown_tag_and_failed_download_say_what_to_do(monkeypatch):
    with pytest.raises(ModelFileError, match=r"neither a file, a CLIP catalogue name .* nor an open_clip weight tag"):
        create_model("changeclip-small", pretrained="openai")

    with socket.socket() as probe:  # "openai" is the catalogue's file: fetched from a server that is down
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CLIPCD_CLIP_MIRROR", f"http://127.0.0.1:{probe.getsockname()[1]}")
    with pytest.raises(ModelFileError, match=r"cannot reach.*clip get openai-vit-b-16.*clip add FILE"):
        create_model("changeclip-vit-b16", pretrained="openai")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)  # other tags: open_clip downloads them
    with pytest.raises(ModelFileError, match=r"could not download.*clip add FILE --arch ARCH"):
        create_model("changeclip-vit-b16", pretrained="metaclip_400m")


def test_a_clip_built_without_init_is_whole_once_loaded():
    from backend.model.config import ClipSpec
    from backend.model.weights import build_clip, load_clip_weights

    torch.manual_seed(3)
    source = open_clip.CLIP(**CFG["vit"]).eval()
    bare = build_clip(ClipSpec(model="tiny", cfg=CFG["vit"]), init=False)
    load_clip_weights(bare, source.state_dict(), "tiny")
    tokens = open_clip.tokenize(["a satellite photo of a road."])
    with torch.no_grad():
        assert torch.equal(bare.eval().encode_text(tokens), source.encode_text(tokens))
    weight = torch.empty(4, 4)
    torch.nn.init.constant_(weight, 2.0)  # the init functions are back after the build
    assert torch.all(weight == 2.0)
