"""The shipped training configs: every file loads, and the ten paper rows carry ChangeCLIP's recipe.

Fast: nothing builds a model. The paper rows' data sources are opened on a fake data root with
the folder names their header comments document (tests/training/fakedata.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from backend.model import list_models
from tests.training.fakedata import make_cdd, make_levircd, make_levircd_plus, make_sysucd, make_whucd
from training.data.loaders import open_source
from training.datasets import DATASETS
from training.evaluation.predict import PROTOCOLS
from training.fit.config import Source, TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
ALL = sorted(CONFIGS.glob("*.yaml")) + sorted(CONFIGS.glob("*.toml"))

#: ../shared/research/models.md §2 (dyzy41/ChangeCLIP configs/0cd_ce): iterations, lr, SyncBN and
#: the validation interval, per dataset and backbone.
SCHEDULE: dict[tuple[str, str], tuple[int, float, bool, int]] = {
    ("rn50", "levir-cd"): (30_000, 1e-4, True, 1000),
    ("vit-b16", "levir-cd"): (40_000, 1e-4, True, 1000),
    ("rn50", "levir-cd-plus"): (40_000, 1e-4, True, 1000),
    ("vit-b16", "levir-cd-plus"): (30_000, 3e-5, True, 1000),
    ("rn50", "whu-cd"): (20_000, 1e-4, False, 500),
    ("vit-b16", "whu-cd"): (20_000, 3e-5, True, 500),
    ("rn50", "cdd"): (40_000, 1e-4, False, 2000),
    ("vit-b16", "cdd"): (40_000, 1e-4, True, 2000),
    ("rn50", "sysu-cd"): (20_000, 3e-5, False, 500),
    ("vit-b16", "sysu-cd"): (20_000, 3e-5, True, 500),
}
BATCH = {"rn50": (20, 40), "vit-b16": (12, 24)}  # per GPU, effective (2 GPUs)
CLIP_FILE = {"rn50": "openai-rn50", "vit-b16": "openai-vit-b-16"}
#: The test split and protocol the paper scores each dataset with.
TEST = {
    "levir-cd": ("levir-cd", "changeclip-merge"),
    "levir-cd-plus": ("levir-cd-plus", "changeclip-merge"),
    "whu-cd": ("whu-cd", "tiles"),
    "cdd": ("cdd", "tiles"),
    "sysu-cd": ("sysu-cd", "tiles"),
}
PAPER_ROWS = {f"changeclip-{backbone}-{dataset}": (backbone, dataset) for backbone, dataset in SCHEDULE}


def _sources(config: TrainConfig) -> list[Source]:
    return [*config.data.train, *config.data.val, *config.data.test]


def _commands(path: Path) -> dict[str, list[str]]:
    """The commands in the file's header comment, by module: ``{"training.train": argv, ...}``."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#\s+(torchrun .*|python -m .*)$", line)
        if match:
            argv = shlex.split(match.group(1))
            found[argv[argv.index("-m") + 1]] = argv
    return found


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake data root with the folder names the paper configs expect (tiles: the levir-cd layout)."""
    root = tmp_path_factory.mktemp("data")
    make_levircd(root / "LEVIR-CD")
    make_levircd(root / "LEVIR-CD-256")
    make_levircd_plus(root / "LEVIR-CD-plus")
    make_levircd(root / "LEVIR-CD-plus-256")
    make_whucd(root / "WHU-CD-256")
    make_cdd(root)  # root/ChangeDetectionDataset/Real/subset/...
    make_sysucd(root / "SYSU-CD")
    return root


def test_every_paper_row_has_a_config() -> None:
    assert {p.stem for p in ALL} >= set(PAPER_ROWS)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_config_loads_with_known_model_datasets_and_protocols(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem
    assert config.model.config in list_models()
    for source in _sources(config):
        assert source.dataset in DATASETS, source
        assert source.protocol in PROTOCOLS, source
    if not config.data.val:  # no best checkpoint to keep: the recipe is chosen by cross-validation
        assert "training.crossval" in path.read_text(encoding="utf-8"), f"{path.name} has no validation sources"


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_row_carries_the_reference_recipe(name: str) -> None:
    backbone, dataset = PAPER_ROWS[name]
    iterations, lr, sync_bn, every = SCHEDULE[backbone, dataset]
    config = load_config(CONFIGS / f"{name}.yaml")
    model, train = config.model, config.train
    assert model.config == f"changeclip-{backbone}"
    assert (model.pretrained, model.miner_pretrained) == ("openai", "openai")
    assert (train.iterations, train.lr, train.sync_bn) == (iterations, lr, sync_bn)
    assert (train.batch, train.effective_batch) == BATCH[backbone]
    assert (train.warmup, train.loss, train.precision, train.weight_decay) == (1500, "ce", "bf16", 0.01)
    assert train.betas == (0.9, 0.999) and train.augment
    assert config.data.crop == 256
    assert (config.eval.every, config.eval.checkpoint_every) == (every, every)
    test_dataset, protocol = TEST[dataset]
    assert [(s.dataset, s.split, s.protocol) for s in config.data.test] == [(test_dataset, "test", protocol)]
    assert [s.split for s in config.data.train] == ["train"] and [s.split for s in config.data.val] == ["val"]


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_row_sources_open_on_the_documented_layout(name: str, data_root: Path) -> None:
    config = load_config(CONFIGS / f"{name}.yaml", data_root=str(data_root))
    for source in _sources(config):
        _, keep = open_source(source, config.data.root)
        assert keep, source


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_header_commands_match_the_config(name: str) -> None:
    """The commands in the comment train this file, mine where training reads, prepare what it reads."""
    backbone, dataset = PAPER_ROWS[name]
    path = CONFIGS / f"{name}.yaml"
    config, commands = load_config(path), _commands(path)
    train = commands["training.train"]
    assert train[:3] == ["torchrun", "--nproc-per-node", "2"]
    assert _option(train, "--config") == f"training/configs/{name}.yaml"
    assert _option(train, "--data-root") == "$DATA"
    assert _option(train, "--pretrained") == CLIP_FILE[backbone]
    assert _option(train, "--miner-pretrained") == "openai-vit-b-16"
    (source,) = config.data.train
    mine = commands["training.mine_prompts"]
    assert _option(mine, "--data-root") == f"$DATA/{source.root}"
    assert (_option(mine, "--dataset"), _option(mine, "--split")) == (source.dataset, "train")
    if dataset.startswith("levir"):
        prepare = commands["training.prepare"]
        assert _option(prepare, "--dataset") == dataset
        assert _option(prepare, "--out") == f"$DATA/{source.root}"
        assert _option(prepare, "--data-root") == f"$DATA/{config.data.test[0].root}"
