"""training.fit.config: checked sections, ``key=value`` overrides, YAML and TOML files, data sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.errors import InputError
from tests.training.tinyrun import tiny_config, write_config
from training.fit.config import (
    Source,
    TrainConfig,
    apply_overrides,
    load_config,
    parse_override,
    read_config_file,
)

TOML = """\
name = "tiny"
description = "a test run"

[model]
config = "siamese-lite0"

[data]
root = "{root}"
crop = 64
cache = true
train = [{{ dataset = "folder", root = ".", exclude = ["pair_3"] }}]
val = [{{ dataset = "folder", root = ".", only = ["pair_3"], protocol = "tiles" }}]

[train]
iterations = 3
batch = 2
lr = 1e-3
warmup = 1
loss = "ce+dice"
precision = "fp32"
augment = false
threads = 1

[eval]
every = 0
checkpoint_every = 100
log_every = 1
batch = 2
"""


def _minimal(**sections: object) -> dict[str, object]:
    return {"name": "x", "data": {"train": [{"dataset": "folder"}]}, **sections}


@pytest.mark.parametrize(
    ("where", "data", "unknown", "known"),
    [
        ("train", _minimal(train={"iteratons": 3}), "iteratons", "iterations"),
        ("eval", _minimal(eval={"evrey": 3}), "evrey", "checkpoint_every"),
        ("model", _minimal(model={"weights": "x"}), "weights", "encoder_weights"),
        ("data", {"name": "x", "data": {"train": [{"dataset": "folder"}], "crops": 64}}, "crops", "repeat_by_area"),
        ("data.train[0]", {"name": "x", "data": {"train": [{"dataset": "folder", "onyl": ["a"]}]}}, "onyl", "exclude"),
        ("config", _minimal(optimizer={}), "optimizer", "description"),
    ],
)
def test_unknown_keys_are_refused_with_the_known_ones_listed(
    where: str, data: dict[str, object], unknown: str, known: str
) -> None:
    with pytest.raises(InputError) as caught:
        TrainConfig.from_dict(data)
    message = str(caught.value)
    assert message.startswith(f"{where}:") and repr(unknown) in message
    assert "known keys are" in message and repr(known) in message


def test_a_section_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(InputError, match="train: expected a table of keys, got int"):
        TrainConfig.from_dict(_minimal(train=3))


def test_values_are_checked_together() -> None:
    with pytest.raises(InputError) as caught:
        TrainConfig.from_dict({"name": "x", "data": {"crop": 100}, "train": {"loss": "focal", "lr": 0}})
    message = str(caught.value)
    for part in ("'x'", "data.crop must be a multiple of 32, got 100", "'focal'", "train.lr", "data.train lists no"):
        assert part in message


@pytest.mark.parametrize("train", [{"zoom": [1.5, 0.5]}, {"zoom": [0, 2]}, {"swap_dates": 1.5}])
def test_zoom_and_swap_dates_are_checked(train: dict[str, object]) -> None:
    data = {"train": [{"dataset": "folder"}]}
    with pytest.raises(InputError, match=r"train\.zoom must be \[low, high\]"):
        TrainConfig.from_dict({"name": "x", "data": data, "train": train})


def test_radiometric_strength_is_checked() -> None:
    data = {"train": [{"dataset": "folder"}]}
    with pytest.raises(InputError, match=r"train\.radiometric must be in \[0, 1\], got 1.5"):
        TrainConfig.from_dict({"name": "x", "data": data, "train": {"radiometric": 1.5}})


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.lr=1e-3", ["train", "lr"], 1e-3),
        ("train.lr=3.0e-5", ["train", "lr"], 3e-5),
        ("train.iterations=100", ["train", "iterations"], 100),
        ("data.cache=true", ["data", "cache"], True),
        ("model.encoder_weights=null", ["model", "encoder_weights"], None),
        ("model.config=changeclip-lite0", ["model", "config"], "changeclip-lite0"),
        ("train.betas=[0.9, 0.98]", ["train", "betas"], [0.9, 0.98]),
        (" model.overrides.head.dropout = 0.2", ["model", "overrides", "head", "dropout"], 0.2),
    ],
)
def test_overrides_read_yaml_scalars(text: str, key: list[str], value: object) -> None:
    parsed_key, parsed = parse_override(text)
    assert parsed_key == key and parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["train.lr", "=3", "train.lr 3"])
def test_an_override_without_key_and_value_is_refused(text: str) -> None:
    with pytest.raises(InputError, match=r"section\.key=value"):
        parse_override(text)


def test_overrides_set_nested_sections_without_touching_the_original() -> None:
    original: dict[str, Any] = {"train": {"lr": 1e-4}, "model": {"config": "siamese-lite0"}}
    changed = apply_overrides(
        original, ["train.lr=1e-3", "model.overrides.head.fusion_channels=32", "model.overrides.head.dropout=0"]
    )
    assert changed["train"]["lr"] == 1e-3 and original["train"]["lr"] == 1e-4
    assert changed["model"]["overrides"] == {"head": {"fusion_channels": 32, "dropout": 0}}
    assert "overrides" not in original["model"]
    with pytest.raises(InputError, match="lr is not a section"):
        apply_overrides(original, ["train.lr.value=1"])


def test_load_config_applies_overrides_and_the_data_root(tmp_path: Path) -> None:
    path = write_config(tmp_path / "tiny.yaml", tmp_path / "data")
    config = load_config(
        path, ["train.lr=1e-3", "train.iterations=7", "model.overrides.prompt_source=default"], str(tmp_path / "x")
    )
    assert config.train.lr == 1e-3 and isinstance(config.train.lr, float)
    assert config.train.iterations == 7
    assert config.model.overrides == {"prompt_source": "default"}
    assert config.data.root == str(tmp_path / "x")
    with pytest.raises(InputError, match="'iteratons'"):
        load_config(path, ["train.iteratons=7"])


def test_yaml_and_toml_files_read_the_same(tmp_path: Path) -> None:
    root = tmp_path / "data"
    from_yaml = load_config(write_config(tmp_path / "tiny.yaml", root))
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML.format(root=root.as_posix()), encoding="utf-8")
    from_toml = load_config(toml)
    assert from_toml == from_yaml
    assert from_toml.train.lr == 1e-3 and from_toml.data.train[0].exclude == ("pair_3",)


def test_the_file_stem_is_the_default_name(tmp_path: Path) -> None:
    path = tmp_path / "my-run.yaml"
    path.write_text("data:\n  train: [{dataset: folder}]\n", encoding="utf-8")
    assert read_config_file(path)["name"] == "my-run"
    assert load_config(path).name == "my-run"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.yaml", None, "not found; the shipped ones are in training/configs/"),
        ("bad.yaml", "train: [unclosed\n", "is not valid YAML"),
        ("bad.toml", "[train\n", "is not valid TOML"),
        ("list.yaml", "- 1\n- 2\n", "must hold a table of sections"),
    ],
)
def test_unreadable_files_say_what_is_wrong(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_config_file(path)


def test_data_sources_keep_only_and_exclude_as_tuples() -> None:
    data = tiny_config(Path("/data"))
    data["data"]["test"] = [{"dataset": "levir-cd", "root": "LEVIR-CD", "split": "test", "protocol": "sliding"}]
    config = TrainConfig.from_dict(data)
    assert config.data.train == (Source("folder", ".", exclude=("pair_3",)),)
    assert config.data.val == (Source("folder", ".", only=("pair_3",), protocol="tiles"),)
    assert config.data.test == (Source("levir-cd", "LEVIR-CD", "test", protocol="sliding"),)
    assert config.data.train[0].only == () and config.data.train[0].split == "train"


def test_to_dict_round_trips() -> None:
    config = TrainConfig.from_dict(tiny_config(Path("/data"), model={"config": "x", "overrides": {"a": {"b": 1}}}))
    assert TrainConfig.from_dict(config.to_dict()) == config
