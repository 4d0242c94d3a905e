"""The shipped default model: what its card says it scores, on images it never trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.model import load_model
from tests.conftest import REPO_ROOT
from training.data.loaders import eval_set
from training.evaluation.evaluate import evaluate
from training.fit.config import TrainConfig, load_config
from training.fit.models import describe_sources

SHIPPED = REPO_ROOT / "resources" / "models" / "clipcd-default.safetensors"
RECIPE = REPO_ROOT / "training" / "configs" / "default-model.yaml"


def test_the_recipe_describes_the_shipped_file() -> None:
    config = load_config(RECIPE)
    _, card = load_model(SHIPPED)
    assert card.config["name"] == config.model.config
    assert card.training["config"] == config.name
    recipe, shipped = config.to_dict()["train"], card.training["recipe"]
    assert shipped == {key: value for key, value in recipe.items() if key in shipped}
    # keys added to the recipe after the file was exported are at their defaults (off), so the recipe still made it
    defaults = TrainConfig.from_dict({"name": "x", "data": {"train": [{"dataset": "folder"}]}}).to_dict()["train"]
    assert {key: value for key, value in recipe.items() if key not in shipped} == {
        key: defaults[key] for key in recipe if key not in shipped
    }
    assert "NOT CLIP-pretrained" in card.description


def test_validation_images_are_whole_images_left_out_of_training() -> None:
    config = load_config(RECIPE)
    for val in config.data.val:
        same_set = [train for train in config.data.train if train.root == val.root]
        for train in same_set:
            assert val.only and set(val.only) <= set(train.exclude), (val, train)


@pytest.mark.samples
def test_card_figures_are_what_the_model_scores(samples: Path) -> None:
    """Each validation set scores as the card says (to 0.5 F1 points), LEVIR-CD at least 0.80."""
    model, card = load_model(SHIPPED)
    config = load_config(RECIPE, data_root=str(samples))
    scores = {}
    for source in config.data.val:
        result = evaluate(model, card, eval_set(source, config.data.root), source.protocol, "cpu")
        name = describe_sources([source])
        scores[name] = result["metrics"]["f1"]
        assert scores[name] == pytest.approx(card.metrics["validation"][name]["f1"], abs=0.005), name
    assert scores["levir-cd (only test_1, test_4)"] >= 0.80, scores
