import pytest
import torch

from backend.model import ZeroShotChange, build_card, create_model, load_model, save_model
from tests.model.conftest import pair


@pytest.fixture(scope="module")
def zeroshot():
    torch.manual_seed(0)
    return create_model("zeroshot-small")


@pytest.mark.parametrize(("h", "w"), [(256, 256), (384, 320)])
def test_zeroshot_shapes(zeroshot, h, w):
    assert isinstance(zeroshot, ZeroShotChange)
    with torch.no_grad():
        logits = zeroshot(*pair(2, h, w), prompts=["building"])
    assert logits.shape == (2, 2, h, w)
    assert torch.all(logits[:, 0] == 0) and torch.isfinite(logits).all()


def test_change_follows_presence(zeroshot, monkeypatch):
    """Present after but not before -> change (appeared); the reverse counts only for 'disappeared'."""
    presence = torch.full((2, 16, 16), -10.0)
    presence[1, 4:8, 4:8] = 10.0  # date B has the class in one block
    monkeypatch.setattr(zeroshot, "presence", lambda images, names: presence)
    image_a, image_b = pair(1)
    settings = zeroshot.settings
    try:
        for direction, sign in (("appeared", 1), ("both", 1), ("disappeared", -1)):
            object.__setattr__(settings, "direction", direction)
            change = zeroshot(image_a, image_b)[0, 1] - zeroshot(image_a, image_b)[0, 0]
            assert sign * change[80:112, 80:112].min() > 0 or (sign < 0 and change[80:112, 80:112].max() < 0)
            assert change[0:32, 200:256].max() < 0  # nothing there on either date
    finally:
        object.__setattr__(settings, "direction", "both")


def test_prompt_choice_and_default(zeroshot):
    assert zeroshot.names(None) == ["building"]
    assert zeroshot.names(["water"]) == ["water"]
    zeroshot.prompt_mode = "join"
    assert zeroshot.names(["water"]) == ["water", "building"]
    zeroshot.prompt_mode = "replace"


def test_zeroshot_goes_through_the_model_file(zeroshot, tmp_path):
    path = tmp_path / "zs.safetensors"
    save_model(zeroshot, build_card(zeroshot, default_prompts=["water"]), path)
    loaded, card = load_model(path)
    assert isinstance(loaded, ZeroShotChange) and card.config["kind"] == "zeroshot"
    assert loaded.default_prompts == ["water"]
    image_a, image_b = pair(1)
    zeroshot._text_cache.clear()  # text batches of other sizes round differently in the last bit
    with torch.no_grad():
        assert torch.equal(loaded(image_a, image_b, ["road"]), zeroshot(image_a, image_b, ["road"]))
