"""Import a published ChangeCLIP checkpoint into a ClipCD model file: ``python -m training.import_changeclip``.

::

    python -m training.import_changeclip CKPT.pth --config changeclip-rn50|changeclip-vit-b16
        --out FILE.safetensors [--miner-weights ViT-B-16.pt] [--default-prompts building] [--allow-partial]

Every tensor of the reference state dict is mapped (:mod:`training.modelfile.changeclip_checkpoint`) or
reported; the command fails (exit 2) when a backend tensor stays unfilled, unless
``--allow-partial``. The prompt miner (a frozen OpenAI ViT-B/16) is not part of ChangeCLIP's
checkpoints; ``--miner-weights`` takes it from a local CLIP file, otherwise the model file uses
fixed default prompts. Exit codes as ``backend``: 0 done, 2 bad input, 1 a bug.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.errors import InputError, ModelFileError
from backend.model import build_card, build_model, get_config, save_model
from backend.model.config import ModelConfig
from training.cli import run_command, setup_logging
from training.modelfile.changeclip_checkpoint import Conversion, convert, detect_family, read_checkpoint

_log = logging.getLogger(__name__)

CONFIGS = ("changeclip-rn50", "changeclip-vit-b16")
REFERENCE = "dyzy41/ChangeCLIP (Dong et al., ChangeCLIP, ISPRS J. 208:53-69, 2024)"
HELP = """\
How an analyst with internet gets the paper's weights into QGIS:
  1. Download a checkpoint from the link in https://github.com/dyzy41/ChangeCLIP (README), e.g. the
     LEVIR-CD RN50 one, and OpenAI's ViT-B-16.pt (the prompt miner; optional).
  2. python -m training.import_changeclip best_mIoU_iter_X.pth --config changeclip-rn50 \\
         --miner-weights ViT-B-16.pt --out changeclip-levir-rn50.safetensors
  3. In the plugin, choose changeclip-levir-rn50.safetensors as the model file.
The file is read with torch.load(weights_only=True); nothing in it is executed. Inputs are 256-px
tiles normalised with ImageNet statistics, as the paper's models were trained.
"""


@dataclass
class ImportReport:
    """What :func:`import_changeclip` did."""

    checkpoint: Path
    config: str
    out: Path | None
    conversion: Conversion
    prompts: str
    written: bool = False
    notes: list[str] = field(default_factory=list)


class IncompleteImportError(ModelFileError):
    """Backend tensors stayed unfilled and ``allow_partial`` was not given."""

    def __init__(self, report: ImportReport) -> None:
        unfilled = report.conversion.unfilled
        super().__init__(
            f"{len(unfilled)} backend tensors have no counterpart in {report.checkpoint} (e.g. {unfilled[:4]}); "
            "is it a ChangeCLIP checkpoint of this config? --allow-partial writes the file anyway, those tensors "
            "keeping random values"
        )
        self.report = report


def model_config(name: str, *, with_miner: bool) -> ModelConfig:
    """The backend config an import of ``name`` fills; without the miner, fixed default prompts."""
    if name not in CONFIGS:
        raise InputError(f"--config must be one of {list(CONFIGS)} (ChangeCLIP's published models), got {name!r}")
    return get_config(name) if with_miner else get_config(name, miner=None, prompt_source="default")


def backend_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors a checkpoint must fill (the miner's excluded), built on the meta device."""
    with torch.device("meta"):
        model = build_model(config, compute_miner=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("miner.")}


def import_changeclip(
    checkpoint: str | Path,
    config: str,
    out: str | Path,
    *,
    miner_weights: str | Path | None = None,
    default_prompts: Sequence[str] = (),
    allow_partial: bool = False,
) -> ImportReport:
    """Convert a ChangeCLIP checkpoint into a ClipCD model file at ``out``.

    Raises:
        InputError: Unknown config, or a checkpoint of the other backbone.
        ModelFileError: Unreadable checkpoint, shape mismatches, or (without ``allow_partial``)
            unfilled backend tensors (:class:`IncompleteImportError`, which carries the report).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    cfg = model_config(config, with_miner=miner_weights is not None)
    reference = read_checkpoint(checkpoint)
    family = detect_family(reference)
    if family is not None and family != config:
        raise InputError(f"{checkpoint} is a {family} checkpoint; run with --config {family}")
    conversion = convert(reference, backend_shapes(cfg))
    if conversion.problems:
        raise ModelFileError(f"{checkpoint} does not fit {config}: " + "; ".join(conversion.problems[:5]))
    prompts = (
        f"mined per tile by the frozen CLIP of {Path(miner_weights).name}"
        if miner_weights is not None
        else "fixed default prompts (no --miner-weights)"
    )
    report = ImportReport(checkpoint, config, out, conversion, prompts)
    if conversion.unfilled and not allow_partial:
        raise IncompleteImportError(report)
    model = build_model(cfg, miner_pretrained=None if miner_weights is None else str(miner_weights))
    result = model.load_state_dict(conversion.tensors, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("miner.")]
    if result.unexpected_keys or set(missing) != set(conversion.unfilled):
        raise RuntimeError(f"load_state_dict disagrees with the mapping: {result}")
    model.weights_source = f"ChangeCLIP checkpoint {checkpoint.name}"
    if conversion.unfilled:
        report.notes.append(f"partial import: {len(conversion.unfilled)} tensors keep random values")
    names = [p for p in default_prompts if p] or list(model.default_prompts)
    card = build_card(
        model,
        overlap=64,
        default_prompts=names,
        training={
            "source": REFERENCE,
            "checkpoint": checkpoint.name,
            "sha256": _sha256(checkpoint),
            "import": "python -m training.import_changeclip",
            "licence": "ChangeCLIP code: Apache-2.0; check the checkpoint's terms with its authors",
        },
        description=f"ChangeCLIP {config.removeprefix('changeclip-')} imported from {checkpoint.name}; prompts "
        + prompts
        + ("; " + "; ".join(report.notes) if report.notes else ""),
    )
    save_model(model, card, out)
    report.written = True
    return report


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def format_report(report: ImportReport) -> str:
    """A short plain-text account of the import, every unmapped and unfilled tensor listed."""
    c = report.conversion
    lines = [
        f"{report.checkpoint} -> {report.out if report.written else '(nothing written)'} ({report.config})",
        f"  {len(c.tensors)} backend tensors filled from the reference state dict",
    ]
    lines += [f"  transformed {name}: {what}" for name, what in c.transformed.items()]
    reasons = sorted(set(c.unused.values()))
    for reason in reasons:
        names = [n for n, r in c.unused.items() if r == reason]
        lines.append(f"  {len(names)} reference tensors unused on purpose ({reason}): {', '.join(names)}")
    lines.append(f"  unmapped reference tensors: {', '.join(c.unmapped) if c.unmapped else 'none'}")
    lines.append(f"  unfilled backend tensors: {', '.join(c.unfilled) if c.unfilled else 'none'}")
    lines.append(f"  prompts: {report.prompts}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m training.import_changeclip",
        description="Convert a published ChangeCLIP checkpoint (mmseg .pth) into a ClipCD .safetensors model file.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint", type=Path, help="ChangeCLIP checkpoint (.pth from the authors, or its state dict)"
    )
    parser.add_argument("--config", required=True, choices=CONFIGS, help="the checkpoint's backbone")
    parser.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    parser.add_argument(
        "--miner-weights",
        type=Path,
        help="OpenAI ViT-B-16.pt (JIT) or an open_clip ViT-B-16 file: the frozen CLIP that mines 9 class names per "
        "tile and date, as ChangeCLIP does; without it the file uses --default-prompts",
    )
    parser.add_argument(
        "--default-prompts", default="", help="comma-separated class names for the fixed prompts (default: building)"
    )
    parser.add_argument("--allow-partial", action="store_true", help="write the file even if tensors stay unfilled")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def work() -> str:
        try:
            report = import_changeclip(
                args.checkpoint,
                args.config,
                args.out,
                miner_weights=args.miner_weights,
                default_prompts=[p.strip() for p in args.default_prompts.split(",")],
                allow_partial=args.allow_partial,
            )
        except IncompleteImportError as exc:
            sys.stdout.write(format_report(exc.report))
            raise
        if report.conversion.unmapped:
            sys.stderr.write("warning: some reference tensors were not used; see 'unmapped' above\n")
        if args.miner_weights is None:
            sys.stderr.write("note: no --miner-weights: the model uses fixed default prompts instead of mined ones\n")
        return format_report(report)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
