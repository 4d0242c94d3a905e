"""Mine the class names of every image once: ``python -m training.mine_prompts``.

::

    python -m training.mine_prompts --data-root DIR --dataset levir-cd --split train
        [--miner ViT-B-16-quickgelu] [--pretrained openai-vit-b-16|openai|FILE] [--out FILE] [--top-k 9]

A frozen CLIP (:class:`backend.model.PromptMiner`, built from open_clip through
:mod:`backend.model.weights`) ranks ChangeCLIP's 56 class names against each whole image, date
A and date B separately, and keeps the top k, best first. The result is cached
(:mod:`training.prompts.prompt_cache`), by default in ``<data-root>/clipcd-prompts-<split>.json``.

``--miner`` is an open_clip model name or a JSON file holding an open_clip model config (the
``cfg`` of a ClipSpec). ``--pretrained`` is a name from the CLIP catalogue (``python -m backend
clip list``; ``openai`` means the catalogue's OpenAI file), another open_clip weight tag, or a
local checkpoint (.safetensors, open_clip .bin/.pt, OpenAI JIT .pt).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from backend.errors import InputError, ModelFileError
from backend.inference.predict import select_device
from backend.model.config import ClipSpec, clip_spec
from backend.model.prompts import CHANGECLIP_CLASSES, PromptMiner
from backend.model.weights import build_clip, load_clip_weights, read_state_dict, resolve_weights
from training.cli import run_command, setup_logging
from training.prompts.prompt_cache import PromptNames, cache_path, write_prompt_cache

_log = logging.getLogger(__name__)

DEFAULT_MINER = "ViT-B-16-quickgelu"
DEFAULT_PRETRAINED = "openai"


def miner_spec(miner: str) -> ClipSpec:
    """A ClipSpec for an open_clip model name or a JSON file with an inline open_clip config."""
    return clip_spec(miner, "--miner")


def build_miner(
    miner: str = DEFAULT_MINER,
    pretrained: str = DEFAULT_PRETRAINED,
    *,
    top_k: int = 9,
    vocabulary: Sequence[str] = CHANGECLIP_CLASSES,
    device: torch.device | str = "cpu",
) -> PromptMiner:
    """A frozen prompt miner that takes images in ``[0, 1]`` (no normalisation of its own).

    Raises:
        ModelFileError: The weights cannot be found, downloaded or loaded; the message names
            the ``--pretrained FILE`` option.
    """
    if top_k < 1 or top_k > len(vocabulary):
        raise InputError(f"--top-k {top_k} must be between 1 and the vocabulary's {len(vocabulary)} names.")
    spec = miner_spec(miner)
    try:
        path = resolve_weights(spec, pretrained)  # before building anything: fail fast offline
    except ModelFileError as exc:
        raise ModelFileError(
            f"{exc}. --pretrained takes a CLIP catalogue name (`python -m backend clip list`), an open_clip tag "
            f"or the path of a {spec.model} file (.pt, .safetensors, open_clip .bin)"
        ) from exc
    clip = build_clip(spec)
    load_clip_weights(clip, read_state_dict(path), str(path.name))
    return PromptMiner(clip, vocabulary, top_k, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).to(device)


def mine_dataset(
    miner: PromptMiner,
    dataset: Dataset[dict[str, Any]],
    *,
    batch_size: int = 16,
    workers: int = 0,
) -> PromptNames:
    """The top-k names of every sample's two dates: ``{sample name: (names A, names B)}``.

    Images are the dataset's whole samples in ``[0, 1]``; consecutive samples of one size are
    mined in batches of up to ``batch_size`` images.
    """
    device = miner.class_embeddings.device
    loader: DataLoader[dict[str, Any]] = DataLoader(dataset, batch_size=None, num_workers=workers, shuffle=False)
    names: PromptNames = {}
    pending: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        images = torch.stack([a for _, a, _ in pending] + [b for _, _, b in pending]).to(device)
        mined = miner.mine(images)
        for i, (key, _, _) in enumerate(pending):
            names[key] = (mined[i], mined[len(pending) + i])
        pending.clear()

    for count, sample in enumerate(_samples(loader), start=1):
        if pending and (2 * len(pending) + 2 > max(batch_size, 2) or sample[1].shape != pending[0][1].shape):
            flush()
        pending.append(sample)
        if count % 100 == 0:
            _log.info("mined %d images", count)
    if pending:
        flush()
    return names


def _samples(loader: Iterable[dict[str, Any]]) -> Iterable[tuple[str, torch.Tensor, torch.Tensor]]:
    for sample in loader:
        image_a, image_b = sample["image_a"].float(), sample["image_b"].float()
        if image_a.ndim != 3 or image_a.shape != image_b.shape:
            raise InputError(
                f"sample {sample['name']}: the two dates are {tuple(image_a.shape)} and {tuple(image_b.shape)}; "
                "both must be the same (3, H, W)."
            )
        yield str(sample["name"]), image_a, image_b


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training.mine_prompts``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.mine_prompts",
        description="Cache the top-k CLIP class names of every image and date of a split.",
    )
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset's root folder")
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. levir-cd, whu-cd, folder")
    parser.add_argument("--split", default="train", help="split to mine (default: train)")
    parser.add_argument("--miner", default=DEFAULT_MINER, help="open_clip model name, or a JSON open_clip config")
    parser.add_argument(
        "--pretrained",
        default=DEFAULT_PRETRAINED,
        help="CLIP weights: a catalogue name (python -m backend clip list), an open_clip tag or a local file",
    )
    parser.add_argument("--out", type=Path, help="cache file (default: <data-root>/clipcd-prompts-<split>.json)")
    parser.add_argument("--top-k", type=int, default=9, help="class names kept per image and date")
    parser.add_argument("--batch", type=int, default=16, help="images per forward pass")
    parser.add_argument("--workers", type=int, default=0, help="image decoding processes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 done, 2 bad input, 1 a bug)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: str(_run(args)))


def _run(args: argparse.Namespace) -> Path:
    from training.datasets import get_dataset

    dataset = get_dataset(args.dataset, args.data_root, args.split)  # checks the layout before any weights
    device = select_device(args.device)
    miner = build_miner(args.miner, args.pretrained, top_k=args.top_k, device=device)
    _log.info(
        "mining the top %d of %d class names for %d pairs on %s",
        args.top_k,
        len(miner.vocabulary),
        len(dataset),
        device,
    )
    names = mine_dataset(miner, dataset, batch_size=args.batch, workers=args.workers)
    pretrained = args.pretrained
    if Path(pretrained).expanduser().is_file():
        pretrained = Path(pretrained).name  # a file's name, never its absolute path
    out = args.out or cache_path(args.data_root, args.split)
    return write_prompt_cache(
        out,
        names,
        miner=miner_spec(args.miner).model,
        pretrained=pretrained,
        top_k=args.top_k,
        vocabulary=miner.vocabulary,
        dataset=args.dataset,
        split=args.split,
    )


if __name__ == "__main__":
    sys.exit(main())
