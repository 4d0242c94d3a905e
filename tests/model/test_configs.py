import json

import pytest
import torch

from backend.errors import InputError
from backend.model import get_config, list_models
from backend.model.config import ModelConfig
from backend.model.factory import build_model


def test_list_models_has_the_three_changeclip_configs_and_zeroshot():
    names = list_models()
    assert {"changeclip-vit-b16", "changeclip-rn50", "changeclip-small"} <= set(names)
    assert {"zeroshot-vit-b16", "zeroshot-small"} <= set(names)
    assert names == sorted(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InputError, match="changeclip-small"):
        get_config("changeclip-huge")


def test_unknown_key_is_refused():
    with pytest.raises(InputError, match="unknown keys"):
        get_config("changeclip-small", head={"widht": 3})


def test_config_round_trips_through_json():
    config = get_config("changeclip-small", head={"dim": 64, "text_dim": 64})
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.head.dim == 64 and again.head.window == 7  # nested override merged key by key


def test_normalisation_travels_with_the_config():
    assert get_config("changeclip-rn50").mean == (0.485, 0.456, 0.406)  # ImageNet, as ChangeCLIP
    assert get_config("zeroshot-vit-b16").std == pytest.approx((0.26862954, 0.26130258, 0.27577711))


@pytest.mark.parametrize(
    ("name", "fpn_in", "params_m"),
    [
        # FPN inputs as in the reference code: both dates concatenated, score map on one level.
        ("changeclip-rn50", [512, 1024, 2048, 4100], (150, 260)),
        ("changeclip-vit-b16", [1536, 1536, 1540, 1536], (200, 300)),
    ],
)
def test_full_configs_structure_on_meta_device(name, fpn_in, params_m):
    with torch.device("meta"):
        model = build_model(get_config(name), compute_miner=False)
    assert [conv.in_channels for conv in model.fusion.fpn.lateral] == fpn_in
    assert model.text_encoder.contexts.shape[1] == 13
    assert model.text_encoder.n_ctx + model.text_encoder.length == 77
    assert len(model.context_decoder.layers) == 3
    assert model.context_decoder.gamma.shape[0] == (1024 if "rn50" in name else 512)
    assert params_m[0] < sum(p.numel() for p in model.parameters()) / 1e6 < params_m[1]
    assert len(model.miner.vocabulary) == 56 and model.miner.top_k == 9
