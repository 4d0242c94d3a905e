"""A CLIP-shaped model whose answers are known: it sees colours, and its words are colours.

The image tower reports a crop's mean colour minus mid-grey (so the grey background counts for
nothing); the text tower maps a text holding "water" to blue, "vegetation" to green and
"building" to white, and every other text to a fourth axis no image reaches. Through the
project's :class:`~backend.labels.labeller.Labeller` a green patch is "vegetation", a blue one
"water" and a white one "building".
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import open_clip
import torch
from torch import Tensor, nn

from backend.inference.model_source import LoadedModel
from backend.labels.labeller import Labeller
from backend.labels.vocabulary import vocabulary
from tests.rasters import utm_transform, write_raster

WORDS = {"water": (-1.0, -1.0, 1.0), "vegetation": (-1.0, 1.0, -1.0), "building": (1.0, 1.0, 1.0)}
GREY, GREEN, BLUE, DARK_BLUE, WHITE = (128, 128, 128), (30, 200, 30), (20, 20, 240), (20, 20, 150), (235, 235, 235)


class ColourClip(nn.Module):
    """encode_image: mean colour minus 0.5 (and 0 on a fourth axis); encode_text: the colour of its word."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))
        self.word_ids = {int(open_clip.tokenize([w])[0, 1]): torch.tensor([*v, 0.0]) for w, v in WORDS.items()}

    def encode_image(self, image: Tensor) -> Tensor:
        colour = image.mean(dim=(2, 3)) - 0.5
        return torch.cat([colour, torch.zeros_like(colour[:, :1])], dim=1)

    def encode_text(self, text: Tensor) -> Tensor:
        rows = []
        for tokens in text.tolist():
            found = [self.word_ids[t] for t in tokens if t in self.word_ids]
            rows.append(found[0] if found else torch.tensor([0.0, 0.0, 0.0, 1.0]))
        return torch.stack(rows)


def colour_labeller(prompts: tuple[str, ...] = ()) -> Labeller:
    """The project's labeller over the colour CLIP (no input normalisation: it reads [0, 1] colours)."""
    return Labeller(
        ColourClip(), vocabulary(prompts), image_size=32, source="colour clip", mean=(0.0,) * 3, std=(1.0,) * 3
    )


class ColourChange(nn.Module):
    """Change logit from the largest per-band difference: 30 * (|a - b| max - 0.2)."""

    def forward(self, image_a: Tensor, image_b: Tensor) -> Tensor:
        difference = (image_a - image_b).abs().amax(dim=1, keepdim=True)
        return 30.0 * (difference - 0.2)


def change_model() -> LoadedModel:
    """The colour-difference model with a card like the shipped models': no text side."""
    card = SimpleNamespace(
        mean=[0.0] * 3,
        std=[1.0] * 3,
        tile_size=64,
        overlap=16,
        threshold=0.5,
        tta="none",
        config={"accepts_prompts": False},
    )
    return LoadedModel(ColourChange(), card, "colour change test model")  # type: ignore[arg-type]


#: (rows, cols, before colour, after colour, the label the colour CLIP must give)
PATCHES = (
    (slice(20, 50), slice(20, 50), GREEN, WHITE, "vegetation → building"),
    (slice(20, 50), slice(120, 150), BLUE, DARK_BLUE, "water"),
    (slice(100, 130), slice(70, 100), WHITE, BLUE, "building → water"),
)


def colour_pair(folder: Path) -> tuple[Path, Path]:
    """A 160 x 180 px grey pair at 10 m holding :data:`PATCHES`."""
    before = np.empty((3, 160, 180), dtype=np.uint8)
    before[:] = np.array(GREY, dtype=np.uint8)[:, None, None]
    after = before.copy()
    for rows, cols, colour_a, colour_b, _ in PATCHES:
        before[:, rows, cols] = np.array(colour_a, dtype=np.uint8)[:, None, None]
        after[:, rows, cols] = np.array(colour_b, dtype=np.uint8)[:, None, None]
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_raster(folder / "before.tif", before, transform=utm_transform()),
        write_raster(folder / "after.tif", after, transform=utm_transform()),
    )
