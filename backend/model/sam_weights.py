"""SAM ViT-B image-encoder weights from the segment-anything checkpoint, read without unpickling code.

``sam_vit_b_01ec64.pth`` (Meta, Apache-2.0) is a plain state dict of the whole SAM; only its
``image_encoder.*`` tensors are used. It is read with ``torch.load(weights_only=True)`` and loaded
strictly: every tensor of the encoder must be there with its shape.
"""

from __future__ import annotations

import pickle  # nosec B403 - only for the exception type
from pathlib import Path

import torch

from backend.errors import ModelFileError
from backend.model.networks.sam import SAM_VIT_B, SamImageEncoder, SamViTConfig
from backend.model.weights import check_tensors

SAM_VIT_B_FILE = "sam_vit_b_01ec64.pth"
SAM_VIT_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
PREFIX = "image_encoder."


def missing_sam_message(path: Path) -> str:
    """What to do when the SAM file is not there: its name, its publisher's URL, the command that fetches it."""
    return (
        f"the SAM ViT-B weights {path} are not there ({SAM_VIT_B_FILE}, 375 MB, Apache-2.0, published by Meta at "
        f"{SAM_VIT_B_URL}). Fetch them with: curl -L --create-dirs -o {path} {SAM_VIT_B_URL}"
    )


def load_sam_image_encoder(path: Path, config: SamViTConfig = SAM_VIT_B) -> SamImageEncoder:
    """The SAM image encoder with the weights of ``path`` (a segment-anything checkpoint), in eval mode.

    Raises:
        ModelFileError: The file is missing (the message says where to get it), is not a
            tensors-only state dict, or lacks or mis-shapes a tensor of the encoder.
    """
    if not path.is_file():
        raise ModelFileError(missing_sam_message(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a tensors-only SAM checkpoint ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path} holds a {type(raw).__name__}, not a SAM state dict")
    state = {k[len(PREFIX) :]: v for k, v in raw.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if not state:
        raise ModelFileError(f"{path} has no {PREFIX}* tensors: not a segment-anything checkpoint")
    encoder = SamImageEncoder(config)
    check_tensors(encoder.state_dict(), state, str(path))
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()
