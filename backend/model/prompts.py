"""Prompt sources: the 56-class vocabulary and a frozen CLIP that mines class names per tile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor, nn

from backend.model.networks.text import PromptTextEncoder

PromptMode = Literal["replace", "join"]

# ChangeCLIP's scene and object classes (tools/rscls.txt), in its order.
CHANGECLIP_CLASSES: tuple[str, ...] = (
    "airport", "bare land", "basketball court", "beach", "bridge", "dense residential", "farmland",
    "forest", "freeway", "ground track field", "harbor", "island", "lake", "meadow", "mine", "mountain",
    "oil tank", "runway", "sea", "solar panel", "stadium", "tennis court", "terrace", "wetland",
    "commercial area", "cotton field", "industrial area", "railway", "interchange",
    "single-family residential", "highway", "intersection", "golf course", "desert", "river", "campus",
    "prairie", "building", "fertile land", "park", "parking lot", "square", "road", "tree", "cars",
    "shrubbery", "impermeable surface", "ship", "airplane", "pond", "church", "chaparral",
    "storage tanks", "snow land", "container", "cabin",
)  # fmt: skip


def top_k_names(image_embeddings: Tensor, class_embeddings: Tensor, names: Sequence[str], k: int) -> list[list[str]]:
    """The ``k`` names whose embeddings are most cosine-similar to each image, best first.

    Args:
        image_embeddings: (B, E).
        class_embeddings: (V, E), row i embeds ``names[i]``.
        names: V class names.
        k: How many names per image (at most V).
    """
    if class_embeddings.shape[0] != len(names):
        raise ValueError(f"{class_embeddings.shape[0]} class embeddings for {len(names)} names")
    sims = F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(class_embeddings.float(), dim=-1).T
    order = sims.topk(min(k, len(names)), dim=-1).indices.tolist()
    return [[names[i] for i in row] for row in order]


def merge_names(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """``first`` then the names of ``second`` not already in it."""
    return list(dict.fromkeys([*first, *second]))


class PromptMiner(nn.Module):
    """Frozen CLIP zero-shot over a vocabulary: the top-k class names of each image.

    Keeps only the CLIP's image tower; the vocabulary's text embeddings are computed once (bare
    names, as ChangeCLIP does) and stored as the ``class_embeddings`` buffer, so they travel with
    the model file. Inputs arrive normalised for the change model and are re-normalised here.
    """

    in_mean: Tensor
    in_std: Tensor
    clip_mean: Tensor
    clip_std: Tensor
    class_embeddings: Tensor

    def __init__(
        self,
        clip: open_clip.CLIP,
        vocabulary: Sequence[str],
        top_k: int,
        in_mean: Sequence[float],
        in_std: Sequence[float],
        compute_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.visual = clip.visual
        self.vocabulary = tuple(vocabulary)
        self.top_k = top_k
        size = clip.visual.image_size
        self.image_size = (int(size[0]), int(size[1])) if isinstance(size, tuple | list) else (int(size), int(size))
        self.register_buffer("in_mean", torch.tensor(in_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_std", torch.tensor(in_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1), persistent=False)
        embed_dim = int(clip.text_projection.shape[-1]) if clip.text_projection is not None else clip.visual.output_dim
        embeddings = torch.zeros(len(self.vocabulary), embed_dim)
        if compute_embeddings:
            with torch.no_grad():
                text = PromptTextEncoder(clip, n_ctx=0, length=clip.positional_embedding.shape[0]).eval()
                embeddings = F.normalize(text.encode(self.vocabulary), dim=-1)
        self.register_buffer("class_embeddings", embeddings)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PromptMiner:
        """Stay in eval mode: the miner is frozen."""
        return super().train(False)

    def preprocess(self, images: Tensor) -> Tensor:
        """Model-normalised images -> CLIP-normalised images at the miner's size."""
        x = images * self.in_std + self.in_mean
        x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.clip_mean) / self.clip_std

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Image embeddings (B, E) of model-normalised images."""
        embeddings: Tensor = self.visual(self.preprocess(images.float()))
        return embeddings

    def mine(self, images: Tensor) -> list[list[str]]:
        """The top-k vocabulary names of each image, best first."""
        return top_k_names(self(images), self.class_embeddings, self.vocabulary, self.top_k)
