"""Full-size configs on CPU: slow, excluded from the default run."""

import pytest
import torch

from backend.model import create_model, model_summary
from tests.model.conftest import pair


@pytest.mark.slow
@pytest.mark.parametrize("name", ["changeclip-vit-b16", "changeclip-rn50"])
def test_full_forward_shapes(name):
    torch.manual_seed(0)
    model = create_model(name)
    with torch.no_grad():
        for h, w in ((256, 256), (320, 384)):
            logits = model(*pair(1, h, w))
            assert logits.shape == (1, 2, h, w) and torch.isfinite(logits).all()
    summary = model_summary(model)
    assert summary["gflops"] > summary["encoder_gflops"] > 0


@pytest.mark.slow
def test_full_zeroshot_forward_shape():
    torch.manual_seed(0)
    model = create_model("zeroshot-vit-b16")
    with torch.no_grad():
        assert model(*pair(1, 256, 256), prompts=["building"]).shape == (1, 2, 256, 256)
