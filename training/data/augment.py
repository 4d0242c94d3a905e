"""ChangeCLIP's training augmentations, applied to whole batches on the training device.

After mmseg's pipeline in the reference configs (``configs/_base_/datasets/base_cd.py``):

- random rotation, p 0.5, uniform in ±180°; both dates and the mask turn together, the mask's
  new corners are 255 (ignored by the loss), the images' are 0;
- horizontal and vertical flips, p 0.5 each;
- photometric distortion drawn independently per date: brightness ±10 (of 255), contrast and
  saturation in [0.8, 1.2], hue ±10 (of mmseg's 180-step hue circle), each applied with p 0.5.

Three more, off by default (``train.zoom``, ``train.swap_dates``, ``train.radiometric``) and not
used by the aerial model's recipe: a random zoom (:func:`zoom`), exchanging the dates
(:func:`swap_dates`) and radiometric and seasonal colour changes that are not change
(:func:`radiometric`).

Images are ``(B, 3, H, W)`` in ``[0, 1]`` (before normalisation); masks ``(B, H, W)`` int64.
Working on the batch on the GPU keeps the data loader down to reading and cropping.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = 255
_BRIGHTNESS = 10 / 255
_CONTRAST = (0.8, 1.2)
_SATURATION = (0.8, 1.2)
_HUE = 10 / 180  # of a full turn


def _chance(n: int, p: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator).to(device) < p


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> Tensor:
    return (low + (high - low) * torch.rand(n, generator=generator)).to(device)


def rotate(
    image_a: Tensor, image_b: Tensor, mask: Tensor, generator: torch.Generator, p: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Turn a random subset of the batch by a uniform angle in ±180° about the centre."""
    n, device = image_a.shape[0], image_a.device
    chosen = _chance(n, p, generator, device)
    angle = _uniform(n, -math.pi, math.pi, generator, device) * chosen
    if not bool(chosen.any()):
        return image_a, image_b, mask
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _resample(image_a, image_b, mask, theta)


def zoom(
    image_a: Tensor,
    image_b: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (1.0, 1.0),
    p: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Scale a random subset of the batch by a log-uniform factor in ``scale`` about a random point.

    Not in the reference: it shows the model other ground sampling distances (0.3 m to 1.5 m in
    the samples). Below 1 the emptied border is 0 in the images and ignored in the mask.
    """
    n, device = image_a.shape[0], image_a.device
    low, high = scale
    if low == high == 1.0:
        return image_a, image_b, mask
    chosen = _chance(n, p, generator, device)
    if not bool(chosen.any()):
        return image_a, image_b, mask
    factor = torch.exp(_uniform(n, math.log(low), math.log(high), generator, device))
    factor = torch.where(chosen, factor, torch.ones_like(factor))
    inverse = 1.0 / factor
    # Keep the sampled window inside the image when zooming in; centre it when zooming out.
    room = (1.0 - inverse).clamp(min=0.0)
    shift_x = _uniform(n, -1.0, 1.0, generator, device) * room
    shift_y = _uniform(n, -1.0, 1.0, generator, device) * room
    zero = torch.zeros_like(inverse)
    theta = torch.stack([torch.stack([inverse, zero, shift_x], 1), torch.stack([zero, inverse, shift_y], 1)], 1)
    return _resample(image_a, image_b, mask, theta)


def _resample(image_a: Tensor, image_b: Tensor, mask: Tensor, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Warp both dates (bilinear) and the mask (nearest) by the affine maps ``theta`` (B, 2, 3)."""
    grid = F.affine_grid(theta, list(image_a.shape), align_corners=False)
    images = torch.cat([image_a, image_b], dim=1)
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
    # The mask moves with nearest sampling; what comes from outside the old square becomes "ignore".
    shifted = (mask.to(images.dtype) + 1.0).unsqueeze(1)  # 0 marks "outside"
    warped_mask = F.grid_sample(shifted, grid.to(images.dtype), mode="nearest", align_corners=False)[:, 0]
    new_mask = torch.where(warped_mask == 0, torch.full_like(mask, IGNORE), (warped_mask - 1).round().long())
    return warped[:, :3], warped[:, 3:], new_mask


def swap_dates(
    image_a: Tensor, image_b: Tensor, generator: torch.Generator, p: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Exchange the two dates of a random subset of the batch; returns both images and the chosen rows.

    Not in the reference. The change masks stay: a building that appears, seen backwards, is one
    that disappears, and both are change.
    """
    chosen = _chance(image_a.shape[0], p, generator, image_a.device)
    c4 = chosen.view(-1, 1, 1, 1)
    return torch.where(c4, image_b, image_a), torch.where(c4, image_a, image_b), chosen


def flip(
    image_a: Tensor, image_b: Tensor, mask: Tensor, generator: torch.Generator, p: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Flip random samples left-right and, independently, top-bottom."""
    n, device = image_a.shape[0], image_a.device
    for dim, chosen in ((-1, _chance(n, p, generator, device)), (-2, _chance(n, p, generator, device))):
        if bool(chosen.any()):
            c4 = chosen.view(-1, 1, 1, 1)
            image_a = torch.where(c4, image_a.flip(dim), image_a)
            image_b = torch.where(c4, image_b.flip(dim), image_b)
            mask = torch.where(chosen.view(-1, 1, 1), mask.flip(dim), mask)
    return image_a, image_b, mask


def _grey(image: Tensor) -> Tensor:
    return (0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]).unsqueeze(1)


def _rotate_hue(image: Tensor, turns: Tensor) -> Tensor:
    """Rotate hue by ``turns`` of a full circle about the grey axis (the YIQ chroma plane)."""
    to_yiq = image.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, image)
    angle = (2 * math.pi * turns).view(-1, 1, 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_yiq), yiq)


def photometric(image: Tensor, generator: torch.Generator) -> Tensor:
    """Mmseg's PhotoMetricDistortion for one date: brightness, contrast, saturation, hue."""
    n, device = image.shape[0], image.device
    view = (-1, 1, 1, 1)
    shift = _uniform(n, -_BRIGHTNESS, _BRIGHTNESS, generator, device) * _chance(n, 0.5, generator, device)
    image = image + shift.view(view)
    contrast = torch.where(
        _chance(n, 0.5, generator, device), _uniform(n, *_CONTRAST, generator, device), torch.ones(n, device=device)
    )
    image = image * contrast.view(view)
    saturation = torch.where(
        _chance(n, 0.5, generator, device), _uniform(n, *_SATURATION, generator, device), torch.ones(n, device=device)
    )
    grey = _grey(image)
    image = grey + (image - grey) * saturation.view(view)
    hue = _uniform(n, -_HUE, _HUE, generator, device) * _chance(n, 0.5, generator, device)
    if bool((hue != 0).any()):
        image = _rotate_hue(image, hue)
    return image.clamp(0.0, 1.0)


def radiometric(image: Tensor, generator: torch.Generator, strength: float, p: float = 0.5) -> Tensor:
    """Colour changes that are not change, for one date: what a season or another sun does.

    Each chosen sample gets, per band, a gain ``exp(U(-s, s))`` for the whole crop, times a smooth
    gain field ``exp(U(-s, s))`` drawn on a 4 x 4 grid and enlarged bicubically (fields greening or
    ploughed in patches of a few hundred metres at 10 m), then a gamma ``exp(U(-s/2, s/2))``.
    OSCD's false alarms are mostly such changes: farmland between seasons, towns under another
    light. ``strength`` 0 changes nothing.
    """
    n, bands, height, width = image.shape
    if strength <= 0:
        return image
    device = image.device
    chosen = _chance(n, p, generator, device).view(-1, 1, 1, 1)
    if not bool(chosen.any()):
        return image

    def log_uniform(*shape: int, s: float) -> Tensor:
        return torch.exp(s * (2 * torch.rand(*shape, generator=generator) - 1)).to(device)

    field = F.interpolate(
        log_uniform(n, bands, 4, 4, s=strength), size=(height, width), mode="bicubic", align_corners=False
    ).clamp(min=0.0)
    gain = log_uniform(n, bands, 1, 1, s=strength) * field
    gamma = log_uniform(n, 1, 1, 1, s=strength / 2)
    changed = (image * gain).clamp(0.0, 1.0).clamp(min=1e-6) ** gamma
    return torch.where(chosen, changed.to(image.dtype), image)


def augment(
    image_a: Tensor, image_b: Tensor, mask: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference augmentations on a batch; ``generator`` (a CPU generator) makes them repeatable."""
    image_a, image_b, mask = rotate(image_a, image_b, mask, generator)
    image_a, image_b, mask = flip(image_a, image_b, mask, generator)
    return photometric(image_a, generator), photometric(image_b, generator), mask
