"""ChangeFine's Hard Sample Contrast Module: a pixel contrastive loss on the most uncertain pixels.

Per image and per class present in the label (with enough pixels), half the anchors are the
class's **hard** pixels, those the network gets wrong, most uncertain first (lowest probability of
the true class), and half its **easy** pixels, most confident first; when one kind runs short the
other fills in. Each anchor's embedding is pulled towards the memory queue's embeddings of its
class and pushed from the others':

    loss(a) = -log( sum_{q in Q_c} exp(a.q / T) / sum_{q in Q} exp(a.q / T) )

with unit-length embeddings, averaged over the anchors. :class:`PixelQueue` keeps the last
``size`` embeddings per class (ChangeFine: 5,000 of 512 dims, T = 0.007), filled from each batch's
labelled pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mine_anchors(
    features: Tensor, labels: Tensor, probabilities: Tensor, per_class: int, *, ignore: int = 255
) -> tuple[Tensor, Tensor]:
    """Pick each image's anchors: per class, the hard pixels most uncertain first, then the easy ones.

    Args:
        features: (B, D, H, W) pixel embeddings.
        labels: (B, H, W) class ids (``ignore`` is skipped).
        probabilities: (B, C, H, W) the network's class probabilities at the same size.
        per_class: Anchors per class and image (classes with fewer labelled pixels are skipped).
        ignore: The label of pixels without a class.

    Returns:
        ``(anchors (N, D), anchor_labels (N,))``; empty when no class has enough pixels.
    """
    batch, dim = features.shape[:2]
    flat = features.permute(0, 2, 3, 1).reshape(batch, -1, dim)
    predicted = probabilities.argmax(1).reshape(batch, -1)
    picked, picked_labels = [], []
    for image in range(batch):
        truth = labels[image].reshape(-1)
        for cls in torch.unique(truth).tolist():
            if cls == ignore:
                continue
            pixels = (truth == cls).nonzero().squeeze(1)
            if pixels.numel() < per_class:
                continue
            confidence = probabilities[image, cls].reshape(-1)[pixels]
            wrong = predicted[image, pixels] != cls
            hard = pixels[wrong][confidence[wrong].argsort()]  # least confident in the truth first
            easy = pixels[~wrong][confidence[~wrong].argsort(descending=True)]
            take_hard = min(hard.numel(), max(per_class // 2, per_class - easy.numel()))
            chosen = torch.cat([hard[:take_hard], easy[: per_class - take_hard]])
            picked.append(flat[image, chosen])
            picked_labels.append(torch.full((chosen.numel(),), cls, dtype=torch.long, device=features.device))
    if not picked:
        return features.new_zeros((0, dim)), torch.zeros(0, dtype=torch.long, device=features.device)
    return torch.cat(picked), torch.cat(picked_labels)


def contrast_loss(anchors: Tensor, anchor_labels: Tensor, queue: Tensor, temperature: float = 0.007) -> Tensor:
    """The mean over anchors of -log(sum of exp(a.q/T) over its class's queue / over the whole queue).

    Args:
        anchors: (N, D) embeddings (normalised here).
        anchor_labels: (N,) their classes.
        queue: (C, M, D) unit-length embeddings, M per class.
        temperature: T.
    """
    if anchors.shape[0] == 0:
        return anchors.sum() * 0.0
    classes, size, dim = queue.shape
    bank = queue.reshape(classes * size, dim)
    bank_labels = torch.arange(classes, device=queue.device).repeat_interleave(size)
    logits = F.normalize(anchors, dim=1) @ bank.T / temperature
    positive = anchor_labels[:, None] == bank_labels[None, :]
    log_all = torch.logsumexp(logits, dim=1)
    log_positive = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (log_all - log_positive).mean()


class PixelQueue:
    """The last ``size`` unit-length pixel embeddings of each class (a ring buffer per class)."""

    def __init__(self, classes: int, size: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.embeddings = F.normalize(torch.randn(classes, size, dim, device=device), dim=2)
        self.pointer = [0] * classes

    @torch.no_grad()
    def push(self, features: Tensor, labels: Tensor, per_image: int, *, ignore: int = 255) -> None:
        """Add up to ``per_image`` embeddings per class and image (the first ones of a random order)."""
        classes, size, _ = self.embeddings.shape
        batch, dim = features.shape[:2]
        flat = F.normalize(features.permute(0, 2, 3, 1).reshape(batch, -1, dim), dim=2)
        for image in range(batch):
            truth = labels[image].reshape(-1)
            for cls in torch.unique(truth).tolist():
                if cls == ignore or not 0 <= cls < classes:
                    continue
                pixels = (truth == cls).nonzero().squeeze(1)
                chosen = pixels[torch.randperm(pixels.numel(), device=pixels.device)[:per_image]]
                for embedding in flat[image, chosen]:
                    self.embeddings[cls, self.pointer[cls]] = embedding
                    self.pointer[cls] = (self.pointer[cls] + 1) % size
