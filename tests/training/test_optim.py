"""training.fit.optim: AdamW's parameter groups, the warm-up + poly schedule, and the change loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from backend.model import create_model
from training.data.augment import IGNORE
from training.fit.optim import WARMUP_START, build_optimizer, change_loss, lr_factor, parameter_groups


class _Net(nn.Module):
    """A conv, the three kinds of norm, and CLIP-/Swin-style embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.linear = nn.Linear(4, 4)
        self.positional_embedding = nn.Parameter(torch.zeros(5, 4))
        self.class_embedding = nn.Parameter(torch.zeros(4))
        self.relative_position_bias_table = nn.Parameter(torch.zeros(9, 2))
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)


def _names(model: nn.Module, group: dict[str, object]) -> set[str]:
    ids = {id(p) for p in group["params"]}  # type: ignore[attr-defined]
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_no_weight_decay_on_norms_and_positional_embeddings_decay_on_conv_weights() -> None:
    model = _Net()
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert _names(model, decay) == {"conv.weight", "conv.bias", "linear.weight", "linear.bias"}
    assert _names(model, no_decay) == {
        "bn.weight", "bn.bias", "ln.weight", "ln.bias", "gn.weight", "gn.bias",
        "positional_embedding", "class_embedding", "relative_position_bias_table",
    }  # fmt: skip


def test_groups_of_a_real_model_cover_every_trainable_parameter_once() -> None:
    model = create_model("siamese-lite0")
    decay, no_decay = parameter_groups(model, 0.01)
    decayed, kept = _names(model, decay), _names(model, no_decay)
    assert not decayed & kept
    assert decayed | kept == {n for n, p in model.named_parameters() if p.requires_grad}
    batchnorms = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert {f"{n}.weight" for n in batchnorms} <= kept
    assert all(name in decayed for name, p in model.named_parameters() if p.ndim == 4)


def test_warm_up_starts_at_1e_6_and_reaches_1_then_poly_reaches_0_at_the_end() -> None:
    total, warmup = 100, 10
    factors = [lr_factor(i, total, warmup) for i in range(total + 1)]
    assert factors[0] == pytest.approx(WARMUP_START) and WARMUP_START == 1e-6
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[warmup // 2] == pytest.approx(0.5, abs=1e-5)
    assert all(a < b for a, b in itertools.pairwise(factors[: warmup + 1]))
    assert all(a > b for a, b in itertools.pairwise(factors[warmup:total]))
    assert factors[total] == 0.0 and factors[total - 1] > 0.0
    assert factors[(total + warmup) // 2] == pytest.approx(0.5)
    assert lr_factor(total + 5, total, warmup) == 0.0
    assert lr_factor(0, total, 0) == 1.0


def test_the_scheduler_follows_lr_factor_from_the_first_step() -> None:
    lr, total, warmup = 1e-3, 8, 3
    optimizer, scheduler = build_optimizer(_Net(), lr, 0.01, (0.9, 0.999), total, warmup)
    assert isinstance(optimizer, torch.optim.AdamW)
    seen = []
    for _ in range(total):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert seen[0] == [pytest.approx(lr * WARMUP_START)] * 2
    assert [s[0] for s in seen] == pytest.approx([lr * lr_factor(i, total, warmup) for i in range(total)])
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_a_warm_up_longer_than_the_run_still_reaches_the_full_rate() -> None:
    optimizer, scheduler = build_optimizer(_Net(), 1.0, 0.0, (0.9, 0.999), 3, 1500)
    rates = []
    for _ in range(3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(1.0)


def _logits_and_mask(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 8, 8, generator=g)
    mask = (torch.rand(2, 8, 8, generator=g) > 0.6).long()
    mask[:, :3] = IGNORE
    return logits, mask


@pytest.mark.parametrize("kind", ["ce", "ce+dice"])
def test_change_loss_ignores_255(kind: str) -> None:
    logits, mask = _logits_and_mask()
    other = logits.clone()
    other[:, :, :3] = torch.randn(2, 2, 3, 8) * 50  # only where the mask says ignore
    assert float(change_loss(logits, mask, kind)) == pytest.approx(float(change_loss(other, mask, kind)))
    other[:, 1, 5] += 3.0  # a counted row changes the loss
    assert float(change_loss(logits, mask, kind)) != pytest.approx(float(change_loss(other, mask, kind)))


def test_ce_is_the_mean_over_counted_pixels() -> None:
    logits, mask = _logits_and_mask()
    valid = mask != IGNORE
    log_p = logits.log_softmax(dim=1)
    expected = -log_p.gather(1, mask.clamp(max=1).unsqueeze(1))[:, 0][valid].mean()
    assert float(change_loss(logits, mask, "ce")) == pytest.approx(float(expected), rel=1e-6)


def test_ce_plus_dice_is_at_least_ce_and_near_ce_for_a_perfect_prediction() -> None:
    logits, mask = _logits_and_mask(1)
    assert float(change_loss(logits, mask, "ce+dice")) >= float(change_loss(logits, mask, "ce"))
    perfect = torch.stack([(mask != 1).float(), (mask == 1).float()], dim=1) * 40.0 - 20.0
    assert float(change_loss(perfect, mask, "ce+dice")) == pytest.approx(0.0, abs=1e-3)


def test_change_loss_backpropagates_from_bf16_logits_in_fp32() -> None:
    logits, mask = _logits_and_mask()
    half = logits.bfloat16().requires_grad_()
    loss = change_loss(half, mask, "ce+dice")
    assert loss.dtype == torch.float32
    loss.backward()  # type: ignore[no-untyped-call]
    assert half.grad is not None and bool(half.grad[:, :, 3:].abs().sum() > 0)
    assert float(half.grad[:, :, :3].abs().sum()) == 0.0
