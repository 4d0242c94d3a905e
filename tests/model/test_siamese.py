"""The plain siamese models: shapes, the stride-2 refinement, weights and model files."""

import dataclasses

import pytest
import torch

from backend.errors import InputError
from backend.model.config import ModelConfig, get_config
from backend.model.factory import create_model
from backend.model.modelfile import build_card, load_model, save_model
from backend.model.networks.efficientnet import EfficientNetLite, imagenet_weights_file, load_efficientnet_pytorch
from backend.model.networks.siamese import SiameseChange


def _pair(n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, h, w, generator=generator), torch.randn(n, 3, h, w, generator=generator)


@pytest.mark.parametrize("name", ["siamese-lite0", "siamese-lite0-s2"])
@pytest.mark.parametrize(("h", "w"), [(256, 256), (96, 160)])
def test_logits_cover_the_tile(name, h, w):
    model = create_model(name)
    with torch.no_grad():
        logits = model(*_pair(2, h, w))
    assert logits.shape == (2, 2, h, w)
    assert torch.isfinite(logits).all() and logits.std() > 0


def test_stage_zero_tap_adds_the_stride_2_level():
    net = EfficientNetLite("efficientnet-lite0", taps=(0, 1, 2, 4, 6))
    levels = net(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in levels] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in levels] == net.out_channels == [16, 24, 40, 112, 320]


def test_refinement_reads_the_stride_2_level():
    coarse, fine = create_model("siamese-lite0"), create_model("siamese-lite0-s2")
    assert isinstance(fine, SiameseChange) and fine.refine is not None and coarse.refine is None
    # The logits change when only the stride-2 branch changes.
    a, b = _pair(1, 64, 64)
    with torch.no_grad():
        base = fine(a, b)
        fine.fine[0].weight.mul_(2.0)  # type: ignore[index]
        assert not torch.allclose(base, fine(a, b))


def test_imagenet_weights_fill_the_tapped_encoder():
    """Taps choose outputs, not parameters: the ImageNet file fits the s2 encoder as it fits the default."""
    net = EfficientNetLite("efficientnet-lite0", taps=(0, 1, 2, 4, 6))
    unused = load_efficientnet_pytorch(net, imagenet_weights_file("efficientnet-lite0"))
    assert unused and all(key.startswith(("_conv_head", "_bn1", "_fc")) for key in unused)
    assert net.state_dict().keys() == EfficientNetLite("efficientnet-lite0").state_dict().keys()


@pytest.mark.parametrize(("kind", "stride"), [("siamese", 3), ("changeclip", 2)])
def test_output_stride_is_checked(kind, stride):
    base = get_config("siamese-lite0" if kind == "siamese" else "changeclip-lite0").to_dict()
    base["head"]["output_stride"] = stride
    with pytest.raises(InputError, match="output_stride"):
        ModelConfig.from_dict(base)


def test_s2_model_file_round_trips(tmp_path):
    model = create_model("siamese-lite0-s2")
    path = tmp_path / "s2.safetensors"
    save_model(model, build_card(model, threshold=0.4), path)
    loaded, card = load_model(path)
    assert dataclasses.asdict(loaded.config)["head"]["output_stride"] == 2 and card.threshold == 0.4
    a, b = _pair(1, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(a, b), loaded(a, b))


def test_files_without_output_stride_load_as_stride_4():
    """Model files written before output_stride existed keep their stride-4 head."""
    config = get_config("siamese-lite0").to_dict()
    del config["head"]["output_stride"]
    assert ModelConfig.from_dict(config).head.output_stride == 4


def test_input_scale_enlarges_what_the_encoder_sees_and_returns_the_input_size(tmp_path):
    model = create_model("siamese-lite0-s2", head={"input_scale": 2.0})
    sizes: list[tuple[int, int]] = []
    model.encoder.register_forward_hook(lambda _m, inputs, _o: sizes.append(tuple(inputs[0].shape[-2:])))
    a, b = _pair(1, 64, 96)
    with torch.no_grad():
        logits = model(a, b)
    assert sizes == [(128, 192)] and logits.shape == (1, 2, 64, 96)
    path = tmp_path / "x2.safetensors"
    save_model(model, build_card(model, threshold=0.5), path)
    loaded, _ = load_model(path)
    assert loaded.config.head.input_scale == 2.0
    with torch.no_grad():
        assert torch.equal(logits, loaded(a, b))


@pytest.mark.parametrize(("kind", "scale"), [("siamese", 8.0), ("siamese", 0.0), ("changeclip", 2.0)])
def test_input_scale_is_checked(kind, scale):
    base = get_config("siamese-lite0" if kind == "siamese" else "changeclip-lite0").to_dict()
    base["head"]["input_scale"] = scale
    with pytest.raises(InputError, match="input_scale"):
        ModelConfig.from_dict(base)
