"""Tiny training runs for tests: a generated A/B/label folder and a config YAML written beside it.

::

    root = make_pairs(tmp_path / "data", count=3)
    config = write_config(tmp_path / "tiny.yaml", root, train={"iterations": 4})
    assert training.fit.train.main(["--config", str(config), "--out", str(tmp_path / "run")]) == 0

The default config trains ``siamese-lite0`` with a random encoder on 64² crops of every pair but
``pair_3`` (batch 2, 3 iterations, cached, no augmentation, one thread) and validates on the whole
of ``pair_3`` under the ``tiles`` protocol at the end only.

One thread (``train.threads: 1``): on a busy 2-core machine, torch's default of one thread per
core makes these small steps 10-50x slower (the threads wait on each other); :func:`kept_threads`
puts the process's setting back afterwards.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

TINY = 64


def make_pairs(root: Path, count: int = 3, size: int = TINY, seed: int = 0, prefix: str = "pair") -> Path:
    """Write ``count`` pairs ``<root>/{A,B,label}/<prefix>_<n>.png`` and return ``root``.

    Each before image is a smooth random field; the after image is the same with one bright
    rectangle, which the 0/255 label marks: change a network can learn.
    """
    rng = np.random.default_rng(seed)
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        coarse = rng.integers(40, 160, (size // 8 + 1, size // 8 + 1, 3)).astype(np.uint8)
        before = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
        after, label = before.copy(), np.zeros((size, size), dtype=np.uint8)
        top, left = (int(v) for v in rng.integers(0, size // 2, 2))
        height, width = (int(v) for v in rng.integers(size // 6, size // 2, 2))
        after[top : top + height, left : left + width] = (230, 225, 210)
        label[top : top + height, left : left + width] = 255
        name = f"{prefix}_{n}.png"
        Image.fromarray(before).save(root / "A" / name)
        Image.fromarray(after).save(root / "B" / name)
        Image.fromarray(label).save(root / "label" / name)
    return root


def tiny_config(data_root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config as a dict; each keyword (``model``, ``data``, ``train``, ``eval``) updates its section."""
    config: dict[str, Any] = {
        "name": "tiny",
        "description": "a test run",
        "model": {"config": "siamese-lite0"},
        "data": {
            "root": str(data_root),
            "crop": TINY,
            "cache": True,
            "train": [{"dataset": "folder", "root": ".", "exclude": ["pair_3"]}],
            "val": [{"dataset": "folder", "root": ".", "only": ["pair_3"], "protocol": "tiles"}],
        },
        "train": {
            "iterations": 3,
            "batch": 2,
            "lr": 1e-3,
            "warmup": 1,
            "loss": "ce+dice",
            "precision": "fp32",
            "augment": False,
            "threads": 1,
        },
        "eval": {"every": 0, "checkpoint_every": 100, "log_every": 1, "batch": 2},
    }
    for key, values in sections.items():
        if isinstance(config.get(key), dict):
            config[key] = {**config[key], **values}
        else:
            config[key] = values
    return config


def write_config(path: Path, data_root: Path, **sections: dict[str, Any]) -> Path:
    """Write :func:`tiny_config` as YAML to ``path``; returns ``path``."""
    path.write_text(yaml.safe_dump(tiny_config(data_root, **sections), sort_keys=False), encoding="utf-8")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv``."""
    with (run_dir / "metrics.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@contextmanager
def kept_threads(threads: int | None = None) -> Iterator[None]:
    """Run with ``threads`` torch threads (when given); restore the process's count on exit.

    A run's ``train.threads`` changes the count for the whole process, hence the restore.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
