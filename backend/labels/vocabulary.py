"""What CLIP chooses from: ChangeCLIP's 56 remote-sensing classes, three land-cover words and the prompts.

Each name is embedded through a small ensemble of templates (the mean of the normalised
embeddings, normalised again), once per run, and cached on disk per CLIP file: the next run with
the same weights, names and templates reads them back instead of running the text tower.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from backend.model.prompts import CHANGECLIP_CLASSES

_log = logging.getLogger(__name__)

#: The prompt ensemble: each class name is read in all of these and the embeddings averaged.
TEMPLATES: tuple[str, ...] = (
    "a satellite photo of {}.",
    "an aerial image of {}.",
    "a remote sensing image of {}.",
    "a top-down photo of {}.",
)


class TextTower(Protocol):
    """The part of a CLIP the vocabulary needs (open_clip's ``CLIP`` has it)."""

    def encode_text(self, text: Tensor) -> Tensor:
        """(N, L) token ids to (N, E) embeddings."""
        ...


#: Land-cover words ChangeCLIP's scene and object classes lack, for changes at 10-30 m.
LAND_COVER: tuple[str, ...] = ("water", "vegetation", "grass")


def clean_prompts(prompts: Sequence[str]) -> tuple[str, ...]:
    """The analyst's prompts stripped, lower-cased and without repeats or empties, in their order."""
    return tuple(dict.fromkeys(p.strip().lower() for p in prompts if p.strip()))


def vocabulary(prompts: Sequence[str] = ()) -> tuple[str, ...]:
    """ChangeCLIP's 56 classes, :data:`LAND_COVER`, then the prompts that are not among them."""
    return tuple(dict.fromkeys([*CHANGECLIP_CLASSES, *LAND_COVER, *clean_prompts(prompts)]))


def cache_key(weights_sha256: str, names: Sequence[str], templates: Sequence[str]) -> str:
    """The file name of the cached text embeddings for these weights, names and templates."""
    digest = hashlib.sha256(json.dumps([list(names), list(templates)]).encode()).hexdigest()
    return f"text-{weights_sha256[:16]}-{digest[:16]}.safetensors"


@torch.no_grad()
def embed_names(
    clip: TextTower,
    names: Sequence[str],
    templates: Sequence[str] = TEMPLATES,
    *,
    device: torch.device | str = "cpu",
    cache: Path | None = None,
) -> Tensor:
    """(V, E) unit-length text embeddings of ``names``, each the normalised mean over ``templates``.

    Args:
        clip: The CLIP whose text tower embeds the names.
        names: The vocabulary.
        templates: Format strings with one ``{}``.
        device: Where the text tower runs.
        cache: A ``.safetensors`` file to read the embeddings from, or to write them to (atomically).
    """
    if cache is not None and cache.is_file():
        stored = load_file(str(cache))["embeddings"]
        if stored.shape[0] == len(names):
            _log.debug("text embeddings of %d names read from %s", len(names), cache)
            return stored.to(device)
    texts = [template.format(name) for name in names for template in templates]
    tokens = open_clip.tokenize(texts).to(device)
    embedded = F.normalize(clip.encode_text(tokens).float(), dim=-1)
    per_name = F.normalize(embedded.reshape(len(names), len(templates), -1).mean(dim=1), dim=-1)
    if cache is not None:
        _store(cache, per_name)
    return per_name


def _store(cache: Path, embeddings: Tensor) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".partial", delete=False) as tmp:
            pass
        save_file({"embeddings": embeddings.detach().cpu().contiguous()}, tmp.name)
        Path(tmp.name).replace(cache)
    except OSError as exc:  # a read-only cache costs time, not the run
        _log.info("could not cache the text embeddings in %s: %s", cache, exc)
