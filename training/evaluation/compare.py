r"""Compare models on a config's validation images: ``python -m training.compare``.

::

    python -m training.compare --config training/configs/default-model.yaml \\
        --model runs/clipcd-lite0/best.safetensors --model runs/siamese-lite0/best.safetensors [--json]

Scores each model file, and a thresholded colour difference, on every validation source of the
config under the source's protocol, at the card's threshold and at the best threshold of a sweep
(the colour difference has no card: it is shown at its best threshold). Prints one table per
source (F1, IoU, precision, recall) and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from backend.model import FORMAT_VERSION, ModelCard, load_model
from training.cli import run_command, setup_logging
from training.data.loaders import eval_set
from training.evaluation.evaluate import evaluate
from training.fit.config import load_config
from training.fit.distributed import pick_device
from training.fit.models import describe_sources
from training.fit.validate import SWEEP

_log = logging.getLogger(__name__)


class ColourDifference(nn.Module):
    """Change logit ``10 * (|a - b| - 0.2)``, ``|a - b|`` the mean absolute RGB difference in ``[0, 1]``.

    Scored over the 0.10-0.90 threshold sweep, that is ``|a - b|`` thresholds from 0.02 to 0.42;
    the sweep's best is the colour difference's best global threshold on the images.
    """

    def forward(self, image_a: Tensor, image_b: Tensor, **_: Any) -> Tensor:
        """(B, 1, H, W) logits from images normalised with mean 0 and std 1 (i.e. in [0, 1])."""
        distance = (image_a - image_b).abs().mean(dim=1, keepdim=True)
        return 10.0 * (distance - 0.2)


def colour_card(tile_size: int = 256, overlap: int = 64) -> ModelCard:
    """A card for :class:`ColourDifference`: images in [0, 1], no normalisation."""
    return ModelCard(
        format_version=FORMAT_VERSION,
        config={},
        backbone="none",
        weights_source="none",
        bands=["red", "green", "blue"],
        mean=[0.0, 0.0, 0.0],
        std=[1.0, 1.0, 1.0],
        tile_size=tile_size,
        overlap=overlap,
        default_prompts=[],
        vocabulary=[],
        threshold=0.5,
        software_version="",
    )


def compare(config_path: Path, models: Sequence[Path], data_root: str | None, device: str) -> dict[str, Any]:
    """Scores of the colour difference and each model on the config's validation sources."""
    config = load_config(config_path, data_root=data_root)
    torch_device = pick_device(device)
    entries: list[tuple[str, nn.Module, ModelCard]] = [("colour difference", ColourDifference(), colour_card())]
    for path in models:
        loaded, card = load_model(path, device=str(torch_device))
        entries.append((f"{path.parent.name}/{path.name}", loaded, card))
    table: dict[str, Any] = {}
    for source in config.data.val:
        dataset = eval_set(source, config.data.root)
        name = describe_sources([source])
        rows = {}
        for label, model, card in entries:
            result = evaluate(model, card, dataset, source.protocol, torch_device, sweep=SWEEP)
            best = max(result["sweep"], key=lambda r: r["f1"])
            rows[label] = {
                "at_card_threshold": None if label == "colour difference" else result["metrics"],
                "card_threshold": card.threshold,
                "best_threshold": best["threshold"],
                "at_best_threshold": best,
            }
            _log.info("%s / %s: F1 %.4f at %.2f", name, label, best["f1"], best["threshold"])
        table[name] = {"protocol": source.protocol, "images": len(dataset), "models": rows}  # type: ignore[arg-type]
    return {"config": config.name, "validation": table}


def format_table(report: dict[str, Any]) -> str:
    """One block per validation source: F1 / IoU / P / R in % at the card's and the best threshold."""
    lines = []
    for source, block in report["validation"].items():
        lines.append(f"{source} [{block['protocol']}, {block['images']} images]")
        lines.append(f"  {'model':<44} {'F1':>6} {'IoU':>6} {'P':>6} {'R':>6}   best t: F1")
        for label, row in block["models"].items():
            m = row["at_card_threshold"] or row["at_best_threshold"]
            best = row["at_best_threshold"]
            lines.append(
                f"  {label:<44} {100 * m['f1']:6.2f} {100 * m['iou']:6.2f} {100 * m['precision']:6.2f} "
                f"{100 * m['recall']:6.2f}   {row['best_threshold']:.2f}: {100 * best['f1']:.2f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 2 bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the training config whose validation sources are used")
    parser.add_argument("--model", action="append", default=[], help="a model file (repeat for several)")
    parser.add_argument("--data-root", help="replaces the config's data root")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    setup_logging(fmt="%(levelname)s %(name)s: %(message)s")

    def work() -> str:
        report = compare(Path(args.config), [Path(m) for m in args.model], args.data_root, args.device)
        return json.dumps(report, indent=2) if args.json else format_table(report)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
