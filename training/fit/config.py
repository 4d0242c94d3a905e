"""Training configs: one small YAML or TOML file per experiment, read into dataclasses.

A config has four sections, each a dataclass below; every key has a default, so a file names
only what differs. ``key=value`` overrides on the command line use dotted keys
(``train.iterations=3``) and YAML scalars (``train.lr=3e-5``, ``data.cache=true``).

Data sources are lists, so one run can mix datasets; each source can keep or drop files by
stem (``only`` / ``exclude``), which is how whole images are held out for validation.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from backend.errors import InputError
from backend.model.config import from_mapping

LossName = Literal["ce", "ce+dice"]
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Source:
    """One dataset split, optionally filtered by file stem.

    Attributes:
        dataset: A name of ``training.datasets.DATASETS`` (``levir-cd``, ``folder``, ...).
        root: The dataset's folder, relative to the run's data root unless absolute.
        split: The split to read.
        only: Keep only these file stems (empty keeps all).
        exclude: Drop these file stems.
        protocol: How the split is scored (val/test sources): tiles, changeclip-merge or sliding.
    """

    dataset: str
    root: str = "."
    split: str = "train"
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    protocol: str = "tiles"


@dataclass(frozen=True)
class ModelSection:
    """What to train.

    Attributes:
        config: A backend model config name (``python -m backend models``).
        pretrained: CLIP weights of the towers: an open_clip tag (``openai``, needs internet) or a
            local file; None for random towers.
        miner_pretrained: Weights of the frozen prompt-mining CLIP (a local file or tag).
        encoder_weights: For ImageNet encoders: ``imagenet`` (the registry package's file), a local
            file, or None for a random encoder.
        overrides: Backend config fields to replace (nested sections merge key by key).
    """

    config: str = "changeclip-small"
    pretrained: str | None = None
    miner_pretrained: str | None = None
    encoder_weights: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """Where the samples come from.

    Attributes:
        root: Data root the sources' roots are relative to (``--data-root`` replaces it).
        train, val, test: Sources of each stage (val and test may be empty).
        crop: Side of the random training crops.
        repeat_by_area: Draw each training image ``ceil(h * w / crop²)`` times per epoch, so large
            images are seen in proportion to their area (for sets of whole scenes).
        cache: Keep decoded training images in memory (small sets only).
        workers: DataLoader worker processes.
        prompt_cache: Read mined class names from ``clipcd-prompts-<split>.json`` beside a source
            when present (``training.mine_prompts`` writes it); otherwise names are mined on the fly.
    """

    root: str = "."
    train: tuple[Source, ...] = ()
    val: tuple[Source, ...] = ()
    test: tuple[Source, ...] = ()
    crop: int = 256
    repeat_by_area: bool = False
    cache: bool = False
    workers: int = 2
    prompt_cache: bool = True


@dataclass(frozen=True)
class TrainSection:
    """The recipe (ChangeCLIP's by default: AdamW, warm-up then poly decay, CE loss).

    Attributes:
        iterations: Optimiser steps.
        batch: Samples per forward pass on each process.
        effective_batch: Samples per optimiser step over all processes; gradients are accumulated
            ``ceil(effective_batch / (batch * world_size))`` times. 0 means ``batch * world_size``.
        lr, weight_decay, betas: AdamW settings (no decay on norms, positional embeddings and
            relative-position tables).
        warmup: Linear warm-up iterations (from ``lr * 1e-6``); then poly decay (power 1) to 0.
        loss: ``ce`` (softmax cross-entropy, the reference) or ``ce+dice``.
        precision: ``bf16`` autocast on CUDA (fp32 on CPU regardless), or ``fp32``.
        sync_bn: Convert BatchNorm to SyncBatchNorm under torchrun.
        augment: Apply the reference augmentations (rotation, flips, per-date photometric).
        zoom: Range of a random zoom applied to half the samples; ``[1, 1]`` (the reference) is off.
        swap_dates: Probability of exchanging a sample's two dates; 0 (the reference) is off.
        radiometric: Strength of per-date band gains, smooth gain fields and gamma
            (``training.data.augment.radiometric``) applied to half the samples; 0 (the reference) is off.
        seed: Seed of weights, sampling and augmentation.
        threads: CPU threads for torch (0 leaves torch's default).
        stop_after: Stop (with a checkpoint) after this many iterations, as if interrupted, with the
            schedule still planned for ``iterations``; ``--resume`` continues. 0 runs to the end.
    """

    iterations: int = 1000
    batch: int = 8
    effective_batch: int = 0
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 1500
    loss: LossName = "ce"
    precision: Precision = "bf16"
    sync_bn: bool = False
    augment: bool = True
    zoom: tuple[float, float] = (1.0, 1.0)
    swap_dates: float = 0.0
    radiometric: float = 0.0
    seed: int = 0
    threads: int = 0
    stop_after: int = 0


@dataclass(frozen=True)
class EvalSection:
    """Validation, checkpoints and logging.

    Attributes:
        every: Validate every this many iterations (and at the end); 0 only at the end.
        checkpoint_every: Write ``last.safetensors`` + ``last.state.pt`` this often (and at the end).
        log_every: Write a metrics row and a log line this often.
        batch: Tiles per forward pass at validation.
        max_images: Validate on at most this many images per source (0: all).
        balance_sources: Choose the best checkpoint and the card's threshold by the mean of the
            sources' IoU and F1 (each source counts once), not by their pooled pixels.
    """

    every: int = 500
    checkpoint_every: int = 500
    log_every: int = 20
    batch: int = 8
    max_images: int = 0
    balance_sources: bool = False


@dataclass(frozen=True)
class CardSection:
    """What the exported model file's card says about the imagery it fits (``backend.model.ModelCard``).

    Attributes:
        pixel_size_range_m: Smallest and largest pixel size of the training images, metres.
        sensors: The sensors or datasets they came from.
        input_stretch: How raw bands become input: ``{rule: auto}`` or ``{rule: sentinel-2, white: 0.3}``.
    """

    pixel_size_range_m: tuple[float, float] | None = None
    sensors: tuple[str, ...] = ()
    input_stretch: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """A whole experiment."""

    name: str
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    card: CardSection = field(default_factory=CardSection)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return json.loads(json.dumps(asdict(self)))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build and check a config; unknown keys are refused with the known ones listed."""
        data = dict(data)
        section = data.get("data", {})
        sources = {
            stage: tuple(from_mapping(Source, s, f"data.{stage}[{i}]") for i, s in enumerate(section.get(stage, [])))
            for stage in ("train", "val", "test")
            if isinstance(section, dict)
        }
        data["model"] = from_mapping(ModelSection, data.get("model", {}), "model")
        data["data"] = from_mapping(
            DataSection, {**section, **sources} if isinstance(section, dict) else section, "data"
        )
        data["train"] = from_mapping(TrainSection, data.get("train", {}), "train")
        data["eval"] = from_mapping(EvalSection, data.get("eval", {}), "eval")
        data["card"] = from_mapping(CardSection, data.get("card", {}), "card")
        config: TrainConfig = from_mapping(cls, data, "config")
        _check(config)
        return config


def _check(config: TrainConfig) -> None:
    t = config.train
    problems = []
    if t.iterations < 1 or t.batch < 1 or t.effective_batch < 0:
        problems.append("train.iterations and train.batch must be >= 1, train.effective_batch >= 0")
    if not t.lr > 0 or t.warmup < 0:
        problems.append(f"train.lr must be > 0 and train.warmup >= 0 (got {t.lr}, {t.warmup})")
    if not (len(t.zoom) == 2 and 0 < t.zoom[0] <= t.zoom[1]) or not 0.0 <= t.swap_dates <= 1.0:
        problems.append(
            f"train.zoom must be [low, high] with 0 < low <= high, train.swap_dates in [0, 1] "
            f"(got {list(t.zoom)}, {t.swap_dates})"
        )
    if not 0.0 <= t.radiometric <= 1.0:
        problems.append(f"train.radiometric must be in [0, 1], got {t.radiometric}")
    if t.loss not in ("ce", "ce+dice"):
        problems.append(f"train.loss must be 'ce' or 'ce+dice', got {t.loss!r}")
    if t.precision not in ("fp32", "bf16"):
        problems.append(f"train.precision must be 'fp32' or 'bf16', got {t.precision!r}")
    if config.data.crop % 32:
        problems.append(f"data.crop must be a multiple of 32, got {config.data.crop}")
    if not config.data.train:
        problems.append("data.train lists no source")
    if problems:
        raise InputError(f"config {config.name!r}: " + "; ".join(problems))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-5"`` -> (["train", "lr"], 3e-05); the value is read as a YAML scalar."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {text!r} must look like section.key=value, e.g. train.iterations=100")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
        with contextlib.suppress(ValueError):
            parsed = float(parsed)
    return key.strip().split("."), parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``section.key=value`` set."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a .yaml/.yml or .toml config file into a dict (the file's stem is the default name)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} not found; the shipped ones are in training/configs/")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a table of sections (model, data, train, eval)")
    data.setdefault("name", path.stem)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None, data_root: str | None = None) -> TrainConfig:
    """Read ``path``, apply ``overrides`` and ``data_root``, and check the result."""
    data = apply_overrides(read_config_file(path), overrides or [])
    if data_root is not None:
        data.setdefault("data", {})["root"] = data_root
    return TrainConfig.from_dict(data)
