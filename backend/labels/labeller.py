"""Zero-shot CLIP labels for the two dates of each change polygon, and which CLIP weights a run uses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor

from backend.clip import store
from backend.errors import InputError, ModelFileError
from backend.labels.vocabulary import TEMPLATES, cache_key, embed_names, vocabulary
from backend.model.weights import build_clip, load_clip_weights, read_state_dict
from backend.params import DetectParams

_log = logging.getLogger(__name__)

ARROW = " → "
#: The weights messages suggest: OpenAI's ViT-B/16, whose sha256 its publisher gives.
SUGGESTED = "openai-vit-b-16"


class ImageTextModel(Protocol):
    """What labelling needs of a CLIP (open_clip's ``CLIP`` has it; tests build tiny ones)."""

    def encode_image(self, image: Tensor) -> Tensor:
        """(N, 3, S, S) normalised images to (N, E) embeddings."""
        ...

    def encode_text(self, text: Tensor) -> Tensor:
        """(N, L) token ids to (N, E) embeddings."""
        ...


@dataclass(frozen=True)
class Labels:
    """The best class of each polygon's before and after crop, and its probability over the vocabulary."""

    class_before: list[str]
    class_after: list[str]
    score_before: np.ndarray
    score_after: np.ndarray

    @property
    def label(self) -> list[str]:
        """``"bare land → building"``, or the one class where both dates agree."""
        return [label_text(a, b) for a, b in zip(self.class_before, self.class_after, strict=True)]


def label_text(before: str, after: str) -> str:
    """What changed, in words: ``before → after``, or ``before`` alone when the dates agree."""
    return before if before == after else f"{before}{ARROW}{after}"


class Labeller:
    """Classifies crops of both dates against a vocabulary with a CLIP.

    Args:
        clip: The CLIP (image and text towers).
        names: The vocabulary (:func:`backend.labels.vocabulary.vocabulary`).
        image_size: The CLIP input side in pixels.
        device: Where both towers run.
        batch_size: Crops per forward pass.
        cache: Where the vocabulary's text embeddings are cached (None: not cached).
        source: What the weights are, for the log ("openai-vit-b-16").
        mean: CLIP's input normalisation mean (OpenAI's for every catalogue CLIP).
        std: CLIP's input normalisation standard deviation.
    """

    def __init__(
        self,
        clip: ImageTextModel,
        names: Sequence[str],
        *,
        image_size: int = 224,
        device: torch.device | str = "cpu",
        batch_size: int = 32,
        cache: Path | None = None,
        source: str = "",
        mean: Sequence[float] = OPENAI_DATASET_MEAN,
        std: Sequence[float] = OPENAI_DATASET_STD,
    ) -> None:
        self.clip = clip
        self.names = tuple(names)
        self.image_size = image_size
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.source = source
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.text = embed_names(clip, self.names, device=self.device, cache=cache)
        scale = getattr(clip, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if isinstance(scale, Tensor) else 100.0

    @torch.no_grad()
    def classify(self, crops: Tensor) -> tuple[list[str], np.ndarray]:
        """The best name of each ``(N, 3, S, S)`` crop in ``[0, 1]`` and its softmax probability."""
        if crops.shape[0] == 0:
            return [], np.zeros(0, dtype=np.float32)
        x = (crops.to(self.device, torch.float32) - self.mean) / self.std
        image = F.normalize(self.clip.encode_image(x).float(), dim=-1)
        probability = (self.logit_scale * image @ self.text.T).softmax(dim=-1)
        score, index = probability.max(dim=-1)
        return [self.names[i] for i in index.tolist()], score.cpu().numpy().astype(np.float32)

    def label(self, before: Tensor, after: Tensor) -> Labels:
        """Labels for matching before and after crops."""
        class_before, score_before = self.classify(before)
        class_after, score_after = self.classify(after)
        return Labels(class_before, class_after, score_before, score_after)


def choose_weights(name: str | None) -> store.ClipWeights | None:
    """The CLIP weights a run labels with: ``name``, else the preferred weights present, else None.

    ``name`` is a catalogue name or one given to ``clip add``; without it,
    :func:`backend.clip.store.preferred` decides.

    Raises:
        ModelFileError: ``name`` is given and not on this computer (the message names ``clip get``
            and ``clip add``).
    """
    if name is not None:
        found = store.find(name)
        if found is None:
            raise store.missing_error(name)
        return found
    return store.preferred()


def open_labeller(weights: store.ClipWeights, prompts: Sequence[str], device: torch.device | str) -> Labeller:
    """Build the CLIP of ``weights``, load them, and embed the vocabulary (cached beside the weights)."""
    clip = build_clip(weights.spec, init=False)  # every tensor is loaded next
    load_clip_weights(clip, read_state_dict(weights.path), weights.name)
    clip.eval().to(device)
    size = clip.visual.image_size
    side = int(size[0] if isinstance(size, tuple | list) else size)
    names = vocabulary(prompts)
    cache = weights.path.parent / "text-cache" / cache_key(weights.sha256, names, TEMPLATES)
    _log.info("labels: %s (%s, %d px crops), %d class names", weights.name, weights.arch, side, len(names))
    return Labeller(clip, names, image_size=side, device=device, cache=cache, source=weights.name)


def plan_labels(params: DetectParams, accepts_prompts: bool, device: torch.device | str) -> Labeller | None:
    """The labeller a run uses, or None; refuses, before any work, prompts that could do nothing.

    Prompts act on a model with a text side (it conditions on them) and, through the labels, on
    any model; so prompts for a model without a text side need CLIP weights.

    Raises:
        InputError: Prompts for a model without a text side, with ``labels`` off.
        ModelFileError: Such prompts and no CLIP weights on this computer, or ``params.clip``
            names weights that are not here (both messages name ``clip get`` and ``clip add``).
    """
    prompts = ", ".join(params.prompts)
    if not params.labels:
        if params.prompts and not accepts_prompts:
            raise InputError(
                f"the prompts ({prompts}) filter the CLIP-labelled polygons, and labels are off (--no-labels); "
                "this model has no text side, so drop one of the two"
            )
        return None
    weights = choose_weights(params.clip)
    if weights is None:
        if params.prompts and not accepts_prompts:
            raise ModelFileError(
                f"the prompts ({prompts}) need CLIP weights to label and filter the change polygons (this model has "
                f"no text side), and none are on this computer. {store.way_out(SUGGESTED)} Or run without prompts."
            )
        _log.info(
            "change polygons are not labelled: labels need CLIP weights (python -m backend clip get %s, "
            "or clip add FILE)",
            SUGGESTED,
        )
        return None
    return open_labeller(weights, params.prompts, device)
