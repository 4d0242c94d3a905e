"""The backend modules follow ChangeCLIP's layout, so its published weights load (training.import_changeclip)."""

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from backend.model import build_card, create_model, load_model, save_model
from backend.model.networks.decoder import UpStage, relative_position_index
from backend.model.networks.text import ContextDecoder
from tests.model.conftest import TINY_RN, TINY_VIT, pair, tiny_model, tiny_overrides


def test_rn_model_file_round_trips_with_one_copy_of_the_attention_pool(tmp_path):
    model = tiny_model("rn")
    assert not any(k.startswith("encoder.pool.") for k in model.state_dict())
    path = tmp_path / "rn.safetensors"
    save_model(model, build_card(model), path)
    loaded, _ = load_model(path)
    image_a, image_b = pair(1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image_a, image_b), model(image_a, image_b))


def test_image_positions_are_resized_bilinearly_when_the_tower_is_built_for_another_size(tmp_path):
    for family, cfg in (("vit", TINY_VIT), ("rn", TINY_RN)):
        torch.manual_seed(0)
        clip = open_clip.CLIP(**cfg)
        path = tmp_path / f"{family}.safetensors"
        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
        overrides = tiny_overrides(family)
        bigger = {**cfg, "vision_cfg": {**cfg["vision_cfg"], "image_size": 128}}
        overrides["clip"] = {"model": f"tiny-{family}-128", "cfg": bigger}
        model = create_model("changeclip-small", pretrained=str(path), **overrides)
        key = "positional_embedding" if family == "vit" else "attnpool.positional_embedding"
        source = clip.visual.get_submodule(key.rpartition(".")[0]) if "." in key else clip.visual
        old = getattr(source, key.rpartition(".")[2])
        new = model.encoder.visual.get_parameter(key)
        side = round((old.shape[0] - 1) ** 0.5)
        grid = old[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        want = F.interpolate(grid, size=(2 * side, 2 * side), mode="bilinear", align_corners=False)
        assert new.shape[0] == 4 * side * side + 1 and torch.equal(new[0], old[0])
        torch.testing.assert_close(new[1:], want.permute(0, 2, 3, 1).reshape(4 * side * side, -1))


def test_context_decoder_layers_have_bias_free_qkv_and_a_biased_projection():
    decoder = ContextDecoder(64, 32, 4, 2)
    names = {k: tuple(v.shape) for k, v in decoder.state_dict().items() if k.startswith("layers.0.self_attn.")}
    assert names == {
        "layers.0.self_attn.q_proj.weight": (32, 32),
        "layers.0.self_attn.k_proj.weight": (32, 32),
        "layers.0.self_attn.v_proj.weight": (32, 32),
        "layers.0.self_attn.proj.weight": (32, 32),
        "layers.0.self_attn.proj.bias": (32,),
    }
    text, visual = torch.randn(2, 2, 64), torch.randn(2, 5, 64)
    decoder.eval()
    with torch.no_grad():
        decoder.gamma.zero_()
        assert torch.equal(decoder(text, visual), text)  # text + gamma * update


def test_up_stage_merges_skip_first_then_the_upsampled_map():
    stage = UpStage(channels=64, dim=32, heads=2, window=7, depth=2, drop_paths=[0.0, 0.0]).eval()
    with torch.no_grad():
        stage.merge[0].weight[:, :32] = 0  # the skip half
        stage.merge[0].bias.fill_(0.5)
        coarse, skip = torch.randn(1, 64, 4, 4), torch.randn(1, 64, 8, 8)
        stage.after[0].weight.zero_()
        stage.after[0].bias.zero_()
        assert torch.allclose(stage(coarse, skip, torch.randn(1, 4, 32)), torch.full((1, 64, 8, 8), 0.5))


def test_relative_position_index_is_swins():
    index = relative_position_index(7)
    assert index.shape == (49, 49) and index[0, 0] == 84 and index.max() == 168 and index.min() == 0
    assert torch.equal(index.diagonal(), torch.full((49,), 84))
