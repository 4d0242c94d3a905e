"""The model file: one ``.safetensors`` whose metadata holds a JSON model card.

Loading never unpickles: the tensors and the card are read with safetensors only. A card from
a newer format, a card with missing keys, or tensors that do not fit the card's config are
refused with a :class:`ModelFileError` that says what is wrong.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from backend import __version__
from backend.errors import InputError, ModelFileError
from backend.model.config import ModelConfig
from backend.model.factory import ClipCDModel, build_model
from backend.model.prompts import CHANGECLIP_CLASSES
from backend.model.weights import check_tensors
from backend.outputs.files import atomic_output
from backend.params import TTA_MODES
from backend.raster.band_names import WAVELENGTH_NM

_logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
CARD_KEY = "clipcd_card"
INPUT_STRETCH_RULES = ("auto", "sentinel-2", "landsat")


@dataclass
class ModelCard:
    """What a model file says about itself.

    Attributes:
        format_version: Version of this card layout (readers refuse newer ones).
        config: The architecture config (:meth:`ModelConfig.to_dict`).
        backbone: open_clip model of the towers (``"ViT-B-16-quickgelu"``).
        weights_source: Where the starting weights came from (tag, file name or "random").
        bands: Meaning of the three input channels.
        mean: Per-band mean in [0, 1] units; the input is ``(x - mean) / std``.
        std: Per-band standard deviation in [0, 1] units.
        tile_size: Tile side in pixels.
        overlap: Overlap between neighbouring tiles in pixels.
        default_prompts: Class names used when the prompt source is "default".
        vocabulary: Class names the prompt miner chooses from.
        threshold: Probability above which a pixel is change.
        training: Data and recipe the weights were trained with.
        metrics: Evaluation results (name -> value or nested dict).
        software_version: ClipCD version that wrote the file.
        description: Free text.
        pixel_size_range_m: Smallest and largest pixel size (metres) in the training data; None: unknown
            (files written before the range was recorded).
        sensors: The sensors or datasets the training images came from.
        band_wavelengths_nm: Centre wavelength of each input band, in the order of ``bands``.
        input_stretch: How raw bands become the model's ``[0, 1]`` input: ``{}`` or ``{"rule": "auto"}``
            is the engine's default (8-bit / 255, other types 2-98 %), ``{"rule": "sentinel-2" | "landsat",
            "white": 0.3}`` maps reflectance by the sensor's formula and ``white`` to 1.0 (the training look).
        tta: The test-time augmentation ``detect`` runs by default ("none", "flips", "d4"): the one the
            card's threshold and figures were measured with.
    """

    format_version: int
    config: dict[str, Any]
    backbone: str
    weights_source: str
    bands: list[str]
    mean: list[float]
    std: list[float]
    tile_size: int
    overlap: int
    default_prompts: list[str]
    vocabulary: list[str]
    threshold: float
    software_version: str
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    pixel_size_range_m: list[float] | None = None
    sensors: list[str] = field(default_factory=list)
    band_wavelengths_nm: list[int] = field(default_factory=list)
    input_stretch: dict[str, Any] = field(default_factory=dict)
    tta: str = "none"

    def range_text(self) -> str:
        """``"0.3-1.5 m (LEVIR-CD, ...)"``, or ``"range unknown"`` for cards without a range."""
        if self.pixel_size_range_m is None:
            return "range unknown"
        low, high = self.pixel_size_range_m
        sensors = f" ({', '.join(self.sensors)})" if self.sensors else ""
        return f"{low:g}-{high:g} m{sensors}"

    def bands_text(self) -> str:
        """``"red 665 nm, green 560 nm, blue 490 nm"`` (names only where no wavelength is recorded)."""
        if len(self.band_wavelengths_nm) != len(self.bands):
            return ", ".join(self.bands)
        return ", ".join(f"{name} {nm} nm" for name, nm in zip(self.bands, self.band_wavelengths_nm, strict=True))

    def to_json(self) -> str:
        """The card as indented JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "card") -> ModelCard:
        """Parse and validate a card (see :func:`card_from_json`)."""
        return card_from_json(text, source)


def card_to_json(card: ModelCard) -> str:
    """The card as indented JSON."""
    return card.to_json()


def card_from_json(text: str, source: str = "card") -> ModelCard:
    """Parse and validate a card.

    Raises:
        ModelFileError: Not JSON, a newer or unknown format version, missing keys, bad values.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{source}: the model card is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{source}: the model card is not a JSON object")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{source}: the model card has no valid format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model card format {version} is newer than this ClipCD ({__version__}) reads "
            f"(format {FORMAT_VERSION}); update ClipCD to use this model"
        )
    names = [f.name for f in fields(ModelCard)]
    required = [f.name for f in fields(ModelCard) if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ModelFileError(f"{source}: the model card lacks required keys {missing}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        _logger.warning("%s: ignoring unknown model card keys %s", source, unknown)
    card = ModelCard(**{k: v for k, v in data.items() if k in names})
    _validate(card, source)
    return card


def _validate(card: ModelCard, source: str) -> None:
    problems = []
    if not (isinstance(card.mean, list) and len(card.mean) == 3 and isinstance(card.std, list) and len(card.std) == 3):
        problems.append("mean and std must hold 3 numbers each")
    elif min(card.std) <= 0:
        problems.append("std must be positive")
    if not isinstance(card.bands, list) or len(card.bands) != 3:
        problems.append("bands must name 3 bands")
    if not isinstance(card.tile_size, int) or card.tile_size <= 0 or card.tile_size % 32:
        problems.append(f"tile_size must be a positive multiple of 32 (got {card.tile_size!r})")
    elif not isinstance(card.overlap, int) or not 0 <= card.overlap < card.tile_size:
        problems.append(f"overlap must be in [0, tile_size) (got {card.overlap!r})")
    if not isinstance(card.threshold, int | float) or not 0.0 <= card.threshold <= 1.0:
        problems.append(f"threshold must be in [0, 1] (got {card.threshold!r})")
    if not isinstance(card.config, dict):
        problems.append("config must be an object")
    if card.tta not in TTA_MODES:
        problems.append(f"tta must be one of {', '.join(TTA_MODES)} (got {card.tta!r})")
    problems += _range_problems(card)
    if problems:
        raise ModelFileError(f"{source}: invalid model card: " + "; ".join(problems))


def _range_problems(card: ModelCard) -> list[str]:
    problems = []
    span = card.pixel_size_range_m
    if span is not None and not (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(v, int | float) and v > 0 for v in span)
        and span[0] <= span[1]
    ):
        problems.append(f"pixel_size_range_m must be [min, max] in metres, 0 < min <= max (got {span!r})")
    stretch = card.input_stretch
    if not isinstance(stretch, dict) or stretch.get("rule", "auto") not in INPUT_STRETCH_RULES:
        problems.append(f"input_stretch.rule must be one of {', '.join(INPUT_STRETCH_RULES)} (got {stretch!r})")
    elif stretch.get("rule", "auto") != "auto" and not (
        isinstance(stretch.get("white"), int | float) and 0 < stretch["white"] <= 2
    ):
        problems.append(f"input_stretch.white must be a reflectance in (0, 2] (got {stretch.get('white')!r})")
    return problems


def build_card(
    model: ClipCDModel,
    *,
    bands: tuple[str, ...] | list[str] = ("red", "green", "blue"),
    tile_size: int | None = None,
    overlap: int = 64,
    threshold: float = 0.5,
    default_prompts: list[str] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    description: str = "",
    pixel_size_range_m: tuple[float, float] | list[float] | None = None,
    sensors: list[str] | None = None,
    input_stretch: dict[str, Any] | None = None,
    tta: str = "none",
) -> ModelCard:
    """A card for ``model`` (a :class:`ChangeCLIP` or :class:`ZeroShotChange`).

    The bands' wavelengths are filled in from their names (:data:`backend.raster.band_names.WAVELENGTH_NM`).
    """
    config = model.config
    miner = getattr(model, "miner", None)
    vocabulary = list(miner.vocabulary) if miner is not None else list(config.vocabulary or CHANGECLIP_CLASSES)
    card = ModelCard(
        format_version=FORMAT_VERSION,
        config=config.to_dict(),
        backbone=config.backbone,
        weights_source=model.weights_source,
        bands=list(bands),
        mean=list(config.mean),
        std=list(config.std),
        tile_size=tile_size or config.tile_size,
        overlap=overlap,
        default_prompts=list(default_prompts if default_prompts is not None else model.default_prompts),
        vocabulary=vocabulary,
        threshold=threshold,
        software_version=__version__,
        training=dict(training or {}),
        metrics=dict(metrics or {}),
        description=description or config.description,
        pixel_size_range_m=list(pixel_size_range_m) if pixel_size_range_m is not None else None,
        sensors=list(sensors or []),
        band_wavelengths_nm=[WAVELENGTH_NM[name] for name in bands] if all(b in WAVELENGTH_NM for b in bands) else [],
        input_stretch=dict(input_stretch or {}),
        tta=tta,
    )
    _validate(card, "build_card")
    return card


def save_model(
    model: ClipCDModel, card: ModelCard, path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> None:
    """Write ``model``'s tensors and ``card`` to one .safetensors file, atomically.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point tensors in that type to halve the
    file; loading casts them back to the model's type.
    """
    path = Path(path)
    if card.config != model.config.to_dict():
        raise InputError("the card's config differs from the model's; build the card with build_card(model)")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    with atomic_output(path) as partial:
        save_file(tensors, str(partial), metadata={"format": "clipcd", CARD_KEY: card.to_json()})
    _logger.info("saved model to %s", path)


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate the card of a model file without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a ClipCD model file (a .safetensors with a model card): {exc}. Pickled checkpoints "
            "(.pt, .pth, .ckpt) are never loaded; export the model with backend.model.save_model"
        ) from exc
    if CARD_KEY not in metadata:
        raise ModelFileError(f"{path} is a safetensors file without a ClipCD model card")
    return card_from_json(metadata[CARD_KEY], str(path))


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[ClipCDModel, ModelCard]:
    """Load a model file -> (model in eval mode on ``device``, card).

    Raises:
        ModelFileError: Missing file, not a model file, bad card, or tensors that do not match.
    """
    card = read_card(path)
    try:
        config = ModelConfig.from_dict(card.config)
    except InputError as exc:
        raise ModelFileError(f"{path}: the card's config is invalid: {exc}") from exc
    model = build_model(config, compute_miner=False)
    miner = getattr(model, "miner", None)
    if miner is not None and list(miner.vocabulary) != list(card.vocabulary):
        raise ModelFileError(f"{path}: the card's vocabulary differs from its config's")
    tensors = load_file(str(path), device="cpu")
    check_tensors(model.state_dict(), tensors, str(path))
    model.load_state_dict(tensors, strict=True)
    model.default_prompts = list(card.default_prompts)
    model.weights_source = card.weights_source
    return model.to(device).eval(), card
