import argparse
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from backend.commands.cli import build_parser
from backend.errors import InputError, ModelFileError
from backend.model import FORMAT_VERSION, build_card, card_from_json, load_model, read_card, save_model
from backend.model.cli import cmd_info, cmd_models
from backend.model.modelfile import CARD_KEY
from tests.model.conftest import pair, tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model("vit", seed=3)
    model.default_prompts = ["building", "road"]
    card = build_card(model, metrics={"levir-cd": {"f1": 0.5}}, training={"data": "none (random weights)"})
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_model(model, card, path)
    return model, card, path


def _rewrite(src, dst, card_dict=None, tensors=None):
    tensors = tensors if tensors is not None else load_file(str(src))
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    if card_dict is not None:
        meta[CARD_KEY] = json.dumps(card_dict)
    save_file(tensors, str(dst), metadata=meta)


def test_round_trip_is_bit_exact(saved):
    model, card, path = saved
    loaded, loaded_card = load_model(path)
    assert loaded_card == card
    original = model.state_dict()
    again = loaded.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    assert loaded.default_prompts == ["building", "road"]
    image_a, image_b = pair(2)
    with torch.no_grad():
        assert torch.equal(model(image_a, image_b), loaded(image_a, image_b))


def test_card_holds_what_the_pipeline_needs(saved):
    _, _, path = saved
    card = read_card(path)
    assert card.format_version == FORMAT_VERSION
    assert card.bands == ["red", "green", "blue"] and card.tile_size == 256 and card.overlap == 64
    assert card.mean == [0.485, 0.456, 0.406] and card.threshold == 0.5
    assert len(card.vocabulary) == 56 and card.default_prompts == ["building", "road"]
    assert card.backbone == "tiny-vit" and card.weights_source == "random"
    assert card.metrics == {"levir-cd": {"f1": 0.5}} and card.software_version
    assert card.tta == "none"  # detect's default for this model: one pass


def test_the_card_names_its_test_time_augmentation(saved, tmp_path):
    _, card, path = saved
    data = json.loads(card.to_json())
    _rewrite(path, tmp_path / "flips.safetensors", data | {"tta": "flips"})
    assert read_card(tmp_path / "flips.safetensors").tta == "flips"
    del data["tta"]  # a file written before the card had the key runs one pass
    _rewrite(path, tmp_path / "older.safetensors", data)
    assert read_card(tmp_path / "older.safetensors").tta == "none"
    _rewrite(path, tmp_path / "bad.safetensors", data | {"tta": "rotate"})
    with pytest.raises(ModelFileError, match="tta must be one of none, flips, d4 \\(got 'rotate'\\)"):
        read_card(tmp_path / "bad.safetensors")


def test_future_format_is_refused(saved, tmp_path):
    _, card, path = saved
    data = json.loads(card.to_json()) | {"format_version": FORMAT_VERSION + 1}
    _rewrite(path, tmp_path / "future.safetensors", data)
    with pytest.raises(ModelFileError, match=f"format {FORMAT_VERSION + 1} is newer.*update ClipCD"):
        load_model(tmp_path / "future.safetensors")


def test_missing_card_keys_are_named(saved, tmp_path):
    _, card, path = saved
    data = json.loads(card.to_json())
    del data["mean"], data["tile_size"]
    _rewrite(path, tmp_path / "partial.safetensors", data)
    with pytest.raises(ModelFileError, match=r"lacks required keys \['mean', 'tile_size'\]"):
        load_model(tmp_path / "partial.safetensors")


def test_bad_card_values_are_refused():
    with pytest.raises(ModelFileError, match="not valid JSON"):
        card_from_json("{nope")
    with pytest.raises(ModelFileError, match="no valid format_version"):
        card_from_json(json.dumps({"format_version": "1"}))


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ModelFileError, match=r"not a ClipCD model file.*never loaded"):
        load_model(path)


def test_mismatched_tensors_are_refused(saved, tmp_path):
    _, _, path = saved
    tensors = load_file(str(path))
    tensors["decoder.head.1.weight"] = torch.zeros(2, 7, 1, 1)
    del tensors["text_encoder.contexts"]
    _rewrite(path, tmp_path / "bad.safetensors", tensors=tensors)
    with pytest.raises(ModelFileError, match=r"1 missing .*text_encoder.contexts.*decoder.head.1.weight: file \(2, 7"):
        load_model(tmp_path / "bad.safetensors")


def test_missing_file_and_card_mismatch(saved, tmp_path):
    _, card, _ = saved
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    other = tiny_model("rn")
    with pytest.raises(InputError, match="build_card"):
        save_model(other, card, tmp_path / "x.safetensors")
    assert not list(tmp_path.glob("*.partial*"))


def test_cli_info_prints_the_card(saved, capsys):
    _, card, path = saved
    assert cmd_info(argparse.Namespace(model_file=str(path))) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown.pop("range") == "range unknown" and shown.pop("input_bands") == "red 665 nm, green 560 nm, blue 490 nm"
    assert shown.pop("prompts").startswith("the model conditions on prompts")  # a ChangeCLIP config: a text side
    assert shown == json.loads(card.to_json())


def test_cli_info_on_a_pickle_exits_2(tmp_path, capsys):
    path = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, path)
    assert cmd_info(argparse.Namespace(model_file=str(path))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "x.pt" in err


def test_cli_models_and_parsers(capsys):
    assert cmd_models(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "changeclip-vit-b16" in out and "zeroshot-small" in out
    args = build_parser().parse_args(["info", "m.safetensors"])
    assert args.handler is cmd_info and args.model_file == "m.safetensors"
