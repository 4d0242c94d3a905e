"""ChangeFine's Prompt Change Decoder: SAM's mask decoder prompted by the coarse change map and the text difference.

The mask decoder of Segment Anything as its checkpoints describe it (an IoU token and mask tokens
before the sparse prompt tokens, the two-way transformer over the image embedding plus the dense
prompt, a transposed-convolution upscaling ×4 and one hypernetwork MLP per mask token), with SAM's
mask-prompt downscaling in front. ChangeFine feeds it the coarse change logits as the dense prompt
and the two dates' text difference as sparse tokens, runs it ``passes`` times at inference (each
pass prompted by the previous one's mask) and blends ``alpha · fine + (1 − alpha) · coarse``.
Parameter names follow segment-anything's ``mask_decoder.*`` and ``prompt_encoder.mask_downscaling.*``.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.model.networks.sam import LayerNorm2d
from backend.model.networks.two_way import TwoWayTransformer


class MLP(nn.Module):
    """``depth`` linear layers with ReLU between them."""

    def __init__(self, width_in: int, hidden: int, width_out: int, depth: int) -> None:
        super().__init__()
        widths = [width_in, *([hidden] * (depth - 1)), width_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """SAM's mask decoder: (image embedding, its position encoding, sparse tokens, dense prompt) to masks and IoUs."""

    def __init__(self, width: int = 256, transformer: TwoWayTransformer | None = None, multimask: int = 3) -> None:
        super().__init__()
        self.transformer = transformer or TwoWayTransformer(width=width)
        self.masks = multimask + 1
        self.iou_token = nn.Embedding(1, width)
        self.mask_tokens = nn.Embedding(self.masks, width)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(width, width // 4, 2, stride=2),
            LayerNorm2d(width // 4),
            nn.GELU(),
            nn.ConvTranspose2d(width // 4, width // 8, 2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(width, width, width // 8, 3) for _ in range(self.masks))
        self.iou_prediction_head = MLP(width, 256, self.masks, 3)

    def forward(self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
        """All masks (B, masks, 4H, 4W) and their predicted IoUs (B, masks); one prompt set per image."""
        batch = image.shape[0]
        output = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).expand(batch, -1, -1)
        tokens = torch.cat([output, sparse], dim=1)
        hidden, image_out = self.transformer(image + dense, image_pe.expand(batch, -1, -1, -1), tokens)
        height, width = image.shape[2:]
        upscaled = self.output_upscaling(image_out.transpose(1, 2).reshape(image.shape[0], -1, height, width))
        hyper = torch.stack([mlp(hidden[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(hidden[:, 0])


def mask_downscaling(width: int, hidden: int = 16) -> nn.Sequential:
    """SAM's mask-prompt encoder: a (B, 1, 4H, 4W) mask to a (B, width, H, W) dense prompt."""
    return nn.Sequential(
        nn.Conv2d(1, hidden // 4, 2, stride=2),
        LayerNorm2d(hidden // 4),
        nn.GELU(),
        nn.Conv2d(hidden // 4, hidden, 2, stride=2),
        LayerNorm2d(hidden),
        nn.GELU(),
        nn.Conv2d(hidden, width, 1),
    )


class PromptChangeDecoder(nn.Module):
    """Refine coarse change logits with SAM's decoder, prompted by them and by the text difference.

    Args:
        width: The image embedding's channels (SAM: 256).
        text_width: The text difference's width, projected to ``width`` as sparse tokens.
        passes: Decoder passes at inference (ChangeFine: 5); training runs one.
        alpha: The refined map's share of the output (the rest is the coarse map).
    """

    def __init__(self, width: int = 256, text_width: int = 512, passes: int = 5, alpha: float = 0.5) -> None:
        super().__init__()
        self.passes, self.alpha = passes, alpha
        self.mask_downscaling = mask_downscaling(width)
        self.text_proj = nn.Linear(text_width, width)
        self.decoder = MaskDecoder(width)

    def forward(self, image: Tensor, image_pe: Tensor, coarse: Tensor, text_difference: Tensor) -> Tensor:
        """Refined (B, 1, 4H, 4W) change logits.

        Args:
            image: The image embedding (B, C, H, W).
            image_pe: Its position encoding (1, C, H, W).
            coarse: The coarse change logits (B, 1, 4H, 4W).
            text_difference: The dates' text difference (B, T, text_width).
        """
        sparse = self.text_proj(text_difference)
        prompt = coarse
        for _ in range(1 if self.training else self.passes):
            masks, iou = self.decoder(image, image_pe, sparse, self.mask_downscaling(prompt))
            best = iou[:, 1:].argmax(dim=1) + 1  # the multimask outputs, as SAM picks them
            prompt = masks[torch.arange(masks.shape[0]), best][:, None]
        refined: Tensor = self.alpha * prompt + (1 - self.alpha) * coarse
        return refined
