"""Test-time augmentation: inverses undo the transforms, equivariant models are unchanged, passes are counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from backend.errors import InputError
from backend.inference.predict import Predictor
from backend.inference.tta import PASSES, TTA_MODES, averaged_logit, transforms


@pytest.mark.parametrize("mode", TTA_MODES)
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 8, 12)])
def test_every_inverse_undoes_its_transform(mode: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    pairs = transforms(mode, square=shape[-1] == shape[-2])
    assert len(pairs) == (PASSES[mode] if shape[-1] == shape[-2] or mode != "d4" else 4)
    seen = set()
    for forward, inverse in pairs:
        assert torch.equal(inverse(forward(x)), x)
        seen.add(forward(x).numpy().tobytes())
    assert len(seen) == len(pairs)  # each copy differs


class Difference(nn.Module):
    """Per-pixel colour difference: the same answer whichever way the pair is turned."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs().mean(1, keepdim=True)


class Ramp(nn.Module):
    """Ignores the images: the logit grows from left to right (the opposite of equivariant)."""

    calls = 0

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        Ramp.calls += 1
        width = a.shape[-1]
        return torch.arange(width, dtype=torch.float32).expand(a.shape[0], 1, a.shape[-2], width).clone()


@pytest.mark.parametrize("mode", TTA_MODES)
def test_an_equivariant_model_gives_the_same_logits(mode: str) -> None:
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    model = Difference()
    plain = averaged_logit(lambda x, y: model(x, y)[:, 0], a, b, "none")
    assert torch.allclose(averaged_logit(lambda x, y: model(x, y)[:, 0], a, b, mode), plain, atol=1e-6)


def test_averaging_removes_what_depends_on_orientation() -> None:
    a = b = torch.zeros(1, 3, 4, 4)
    ramp = Ramp()
    flips = averaged_logit(lambda x, y: ramp(x, y)[:, 0], a, b, "flips")
    assert torch.allclose(flips, torch.full((1, 4, 4), 1.5))  # mean of 0..3 and 3..0
    d4 = averaged_logit(lambda x, y: ramp(x, y)[:, 0], a, b, "d4")
    assert torch.allclose(d4, torch.full((1, 4, 4), 1.5))
    with pytest.raises(ValueError, match="sideways"):
        transforms("sideways", square=True)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_the_predictor_runs_one_pass_per_copy(mode: str) -> None:
    Ramp.calls = 0
    predictor = Predictor(Ramp(), [0.5] * 3, [0.5] * 3, torch.device("cpu"), batch_size=4, tta=mode)
    logits = predictor.infer(np.zeros((3, 3, 8, 8), np.float32), np.zeros((3, 3, 8, 8), np.float32))
    assert logits.shape == (3, 8, 8) and Ramp.calls == PASSES[mode]
    expected = np.arange(8, dtype=np.float32) if mode == "none" else np.full(8, 3.5, np.float32)
    assert np.allclose(logits[0, 0], expected)


def test_an_unknown_mode_is_an_input_error() -> None:
    with pytest.raises(InputError, match="tta='all'"):
        Predictor(Ramp(), [0.5] * 3, [0.5] * 3, torch.device("cpu"), tta="all")
