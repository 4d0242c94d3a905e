"""ChangeFine's hard-sample contrast: the right pixels are mined, and the loss is the hand-computed one."""

from __future__ import annotations

import math

import pytest
import torch

from training.fit.contrast import PixelQueue, contrast_loss, mine_anchors

#: One image, one row of six pixels: class 1 at pixels 0-3, class 0 at pixels 4-5.
LABELS = torch.tensor([[[1, 1, 1, 1, 0, 0]]])
#: The network's probability of class 1 per pixel: wrong (< 0.5) at pixels 1 and 2, pixel 1 the least sure.
P1 = torch.tensor([0.9, 0.2, 0.4, 0.8, 0.3, 0.4])
ANGLES = [0.1, 1.2, 0.7, 0.3, 2.0, 2.5]  # each pixel's embedding is a distinct unit vector (cos, sin)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.tensor([[math.cos(a) for a in ANGLES], [math.sin(a) for a in ANGLES]]).reshape(1, 2, 1, 6)
    probabilities = torch.stack([1 - P1, P1]).reshape(1, 2, 1, 6)
    return features, probabilities


def test_the_most_uncertain_wrong_pixel_and_the_surest_right_one_are_mined() -> None:
    features, probabilities = inputs()
    anchors, labels = mine_anchors(features, LABELS, probabilities, per_class=2)
    # class 0 (pixels 4, 5: both right, surest first), then class 1: hard pixel 1 (p 0.2, not 2 at 0.4), easy pixel 0
    assert labels.tolist() == [0, 0, 1, 1]
    expected = [4, 5, 1, 0]
    assert torch.allclose(anchors, features[0, :, 0, expected].T)


def test_the_loss_is_the_hand_computed_one() -> None:
    features, probabilities = inputs()
    anchors, labels = mine_anchors(features, LABELS, probabilities, per_class=2)
    queue = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # one embedding per class: class 0 along x, class 1 along y
    temperature = 0.5
    by_hand = 0.0
    for pixel, cls in zip([4, 5, 1, 0], [0, 0, 1, 1], strict=True):
        x, y = math.cos(ANGLES[pixel]), math.sin(ANGLES[pixel])
        own = x if cls == 0 else y
        by_hand += -math.log(math.exp(own / temperature) / (math.exp(x / temperature) + math.exp(y / temperature)))
    by_hand /= 4
    assert contrast_loss(anchors, labels, queue, temperature).item() == pytest.approx(by_hand, rel=1e-6)
    wrong_pixel = features[0, :, 0, [4, 5, 2, 0]].T  # pixel 2 mined instead of the less sure pixel 1
    assert contrast_loss(wrong_pixel, labels, queue, temperature).item() != pytest.approx(by_hand, rel=1e-3)


def test_short_classes_are_skipped_and_the_queue_rings() -> None:
    features, probabilities = inputs()
    anchors, _ = mine_anchors(features, LABELS, probabilities, per_class=3)  # class 0 has only 2 pixels
    assert anchors.shape == (3, 2)
    queue = PixelQueue(classes=2, size=3, dim=2)
    queue.push(features, LABELS, per_image=4)
    assert queue.pointer == [2, 1]  # class 0: 2 added; class 1: 4 added into 3 slots, wrapped
    norms = queue.embeddings.norm(dim=2)
    assert torch.allclose(norms, torch.ones_like(norms))
    empty = mine_anchors(features, torch.full_like(LABELS, 255), probabilities, per_class=2)[0]
    assert contrast_loss(empty, torch.zeros(0, dtype=torch.long), queue.embeddings).item() == 0.0
