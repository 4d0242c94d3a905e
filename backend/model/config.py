"""Model configurations: small JSON files read into dataclasses.

Each file in ``configs/`` describes one architecture. A config names the open_clip model that
provides the image and text towers (``clip``), the frozen CLIP that mines prompts (``miner``),
the input normalisation, and the sizes of the text side, the fusion and the decoder. The
normalisation travels with the config and, through the model card, with every model file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from backend.errors import InputError

CONFIG_DIR = Path(__file__).with_name("configs")

Kind = Literal["changeclip", "zeroshot", "siamese"]
Direction = Literal["appeared", "disappeared", "both"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model provides a CLIP.

    Attributes:
        model: open_clip model name (``"ViT-B-16-quickgelu"``) or a label for an inline config.
        cfg: Inline open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``,
            ``quick_gelu``); None takes open_clip's built-in config for ``model``.
        pretrained: The weight tag these weights come from by default (documentation and the
            ``pretrained="default"`` shortcut); None for random weights.
    """

    model: str
    cfg: dict[str, Any] | None = None
    pretrained: str | None = None


def clip_spec(model: str, option: str = "--arch") -> ClipSpec:
    """A ClipSpec for an open_clip model name, or a JSON file holding an inline open_clip config.

    Raises:
        InputError: The JSON file cannot be read or is not an open_clip config; the message names ``option``.
    """
    path = Path(model).expanduser()
    if path.suffix != ".json":
        return ClipSpec(model=model)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{option} {model}: cannot read the open_clip config JSON ({exc}).") from exc
    if not isinstance(cfg, dict) or "vision_cfg" not in cfg:
        raise InputError(f"{option} {model}: an open_clip config needs embed_dim, vision_cfg and text_cfg.")
    return ClipSpec(model=path.stem, cfg=cfg)


@dataclass(frozen=True)
class TextConfig:
    """The prompt side: learned context, prompts and the context decoder."""

    context_tokens: int = 13  # learnable context vectors spliced after the start token
    length: int = 64  # tokenised prompt length (the context vectors come on top)
    background: str = "remote sensing image background objects"
    foreground: str = "remote sensing image foreground objects, "
    top_k: int = 9  # class names mined per image and date
    decoder_width: int = 256
    decoder_heads: int = 4
    decoder_layers: int = 3
    decoder_dropout: float = 0.1
    gamma_init: float = 1e-4  # initial residual scale of the context decoder


@dataclass(frozen=True)
class HeadConfig:
    """Feature pyramid taps, differential fusion and the vision-language decoder."""

    out_indices: tuple[int, ...] = (3, 5, 7, 11)  # ViT blocks tapped (RN: always the 4 stages)
    fusion_channels: int = 256
    dim: int = 128  # decoder width
    heads: int = 2
    window: int = 7
    depth: int = 2  # window-attention blocks per up-sampling stage
    text_dim: int = 128  # width of the text tokens the decoder attends to
    drop_path: float = 0.2
    dropout: float = 0.1
    output_stride: int = 4  # siamese: 2 refines the stride-4 map with the encoder's stride-2 level
    input_scale: float = 1.0  # siamese: both dates are resampled by this factor before the encoder


@dataclass(frozen=True)
class ZeroShotConfig:
    """Zero-shot change from dense CLIP similarity maps."""

    background: tuple[str, ...] = ("background", "bare land", "grass", "road", "trees", "water")
    template: str = "a satellite photo of {}."
    temperature: float = 50.0
    direction: Direction = "both"
    smooth: int = 3  # box filter (in feature cells) over the similarity maps; 1 = none


@dataclass(frozen=True)
class ModelConfig:
    """One model architecture.

    Attributes:
        name: Config name, as listed by :func:`list_models`.
        kind: ``"changeclip"`` (trained change model), ``"zeroshot"`` (CLIP only) or
            ``"siamese"`` (a plain siamese network on an ImageNet encoder, no text side).
        clip: The CLIP whose towers the model fine-tunes (or uses frozen, in zero-shot mode);
            None for siamese models.
        miner: The frozen CLIP that mines class names per tile; None for zero-shot models.
        mean: Per-band mean of the input in [0, 1] image units.
        std: Per-band standard deviation in [0, 1] image units.
        tile_size: The tile size the model was made for.
        vocabulary: Class names mined by the prompt miner; empty uses the 56 ChangeCLIP classes.
        default_prompts: Class names used when the prompt source is ``"default"``.
        prompt_source: Where prompts come from when the caller gives none.
        dense: How dense embeddings are made: ``"attention"`` (ChangeCLIP) or ``"value"``
            (the attention-free value path of the last layer, better localised for zero-shot).
        image_encoder: ``"clip"`` (the CLIP's own image tower) or an ImageNet encoder,
            ``"efficientnet-lite0"`` (1, 2): then only the CLIP's text tower is used.
        accepts_prompts: False for models trained with fixed prompts: the analyst's class names
            are ignored (with a warning) and ``default_prompts`` are always used.
        text: Prompt-side sizes.
        head: Fusion and decoder sizes.
        zeroshot: Zero-shot settings (zero-shot models only).
        description: One line for ``python -m backend models``.
    """

    name: str
    kind: Kind
    clip: ClipSpec | None = None
    miner: ClipSpec | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tile_size: int = 256
    vocabulary: tuple[str, ...] = ()
    default_prompts: tuple[str, ...] = ("building",)
    prompt_source: Literal["auto", "default"] = "auto"
    dense: Literal["attention", "value"] = "attention"
    image_encoder: str = "clip"
    accepts_prompts: bool = True
    text: TextConfig = field(default_factory=TextConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    zeroshot: ZeroShotConfig | None = None
    description: str = ""

    @property
    def backbone(self) -> str:
        """The networks behind the model, for cards and listings."""
        if self.clip is None:
            return self.image_encoder
        if self.image_encoder != "clip":
            return f"{self.image_encoder} + {self.clip.model} text"
        return self.clip.model

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict, refusing unknown or missing keys with a clear message.

        Raises:
            InputError: The dict does not describe a valid config.
        """
        data = dict(data)
        sections = {
            "clip": from_mapping(ClipSpec, data["clip"], "clip") if data.get("clip") is not None else None,
            "miner": from_mapping(ClipSpec, data["miner"], "miner") if data.get("miner") is not None else None,
            "text": from_mapping(TextConfig, data.get("text", {}), "text"),
            "head": from_mapping(HeadConfig, data.get("head", {}), "head"),
            "zeroshot": (
                from_mapping(ZeroShotConfig, data["zeroshot"], "zeroshot") if data.get("zeroshot") is not None else None
            ),
        }
        data.update(sections)
        config: ModelConfig = from_mapping(cls, data, "config")
        if config.kind not in ("changeclip", "zeroshot", "siamese"):
            raise InputError(
                f"config {config.name!r}: kind must be 'changeclip', 'zeroshot' or 'siamese', got {config.kind!r}"
            )
        if config.kind != "siamese" and config.clip is None:
            raise InputError(f"config {config.name!r}: a {config.kind} config needs a 'clip' section")
        if config.kind == "siamese" and config.image_encoder == "clip":
            raise InputError(
                f"config {config.name!r}: a siamese config needs an image_encoder such as efficientnet-lite0"
            )
        if config.kind == "changeclip" and config.miner is None and config.prompt_source == "auto":
            raise InputError(f"config {config.name!r}: prompt_source 'auto' needs a 'miner' CLIP")
        if config.kind == "zeroshot" and config.zeroshot is None:
            raise InputError(f"config {config.name!r}: a zero-shot config needs a 'zeroshot' section")
        if config.head.output_stride not in (2, 4) or (config.head.output_stride == 2 and config.kind != "siamese"):
            raise InputError(
                f"config {config.name!r}: head.output_stride must be 4, or 2 for a siamese config "
                f"(got {config.head.output_stride})"
            )
        scale = config.head.input_scale
        if not 0.25 <= scale <= 4 or (scale != 1.0 and config.kind != "siamese"):
            raise InputError(
                f"config {config.name!r}: head.input_scale must be in [0.25, 4], and 1 unless the config is "
                f"siamese (got {scale})"
            )
        if config.image_encoder != "clip" and not config.image_encoder.startswith("efficientnet-lite"):
            raise InputError(
                f"config {config.name!r}: image_encoder must be 'clip' or 'efficientnet-lite0/1/2', "
                f"got {config.image_encoder!r}"
            )
        if len(config.mean) != 3 or len(config.std) != 3 or min(config.std) <= 0:
            raise InputError(f"config {config.name!r}: mean and std must be 3 values each, std > 0")
        return config


def from_mapping(cls: Any, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a dict, refusing unknown keys; lists become tuples (but ``cfg``).

    Shared by the model configs and the training configs.

    Raises:
        InputError: ``data`` is not a dict, has unknown keys, or misses required ones (``where`` names it).
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a table of keys, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) and k != "cfg" else v for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from exc


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "cfg":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def list_models() -> list[str]:
    """Names of the shipped configs, sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """Read config ``name`` and apply ``overrides`` (nested sections merge key by key).

    Raises:
        InputError: Unknown name (the message lists the known ones) or invalid overrides.
    """
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise InputError(f"unknown model config {name!r}; choose one of {list_models()}")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["name"] = name
    return ModelConfig.from_dict(merge(data, overrides))
