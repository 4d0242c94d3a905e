"""The real check of zero-shot labelling, for a machine that has a real CLIP checkpoint.

``../shared/data/clip-crops.csv`` lists 22 crops checked by eye (water, farmland, bare land,
building, trees, grass, road). With ``CLIPCD_CLIP_CHECKPOINT`` naming a CLIP file (and
``CLIPCD_CLIP_ARCH`` its open_clip architecture, unless the file is in the catalogue), the file is
registered like ``clip add`` does and the project's own labeller must name at least 15 of the 22
right. Without a checkpoint the test is skipped, saying so (none can be downloaded here).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.clip.manage import add
from backend.labels.labeller import open_labeller

CHECKPOINT_ENV, ARCH_ENV = "CLIPCD_CLIP_CHECKPOINT", "CLIPCD_CLIP_ARCH"
#: What counts as right for each expected name (the vocabulary has near-synonyms: "tree", "lake", ...).
ACCEPTED = {
    "water": {"water", "lake", "river", "pond", "sea"},
    "farmland": {"farmland", "fertile land", "cotton field"},
    "bare land": {"bare land", "desert"},
    "building": {"building", "dense residential", "single-family residential", "industrial area", "commercial area"},
    "trees": {"trees", "tree", "forest"},
    "grass": {"grass", "meadow", "prairie"},
    "road": {"road", "highway", "freeway", "intersection"},
}
NEEDED = 15


@pytest.mark.samples
def test_a_real_clip_names_most_of_the_checked_crops(samples: Path) -> None:
    checkpoint = os.environ.get(CHECKPOINT_ENV)
    if not checkpoint or not Path(checkpoint).is_file():
        pytest.skip(f"no real CLIP checkpoint: set {CHECKPOINT_ENV} to one (and {ARCH_ENV} to its architecture)")
    weights = add(Path(checkpoint), os.environ.get(ARCH_ENV), "real-check")
    rows = list(csv.DictReader((samples / "clip-crops.csv").open(encoding="utf-8")))
    expected = sorted({row["expected"] for row in rows})
    labeller = open_labeller(weights, expected, "cuda" if torch.cuda.is_available() else "cpu")
    crops = []
    for row in rows:
        x0, y0, size = int(row["x0"]), int(row["y0"]), int(row["size"])
        image = Image.open(samples / row["file"]).convert("RGB").crop((x0, y0, x0 + size, y0 + size))
        image = image.resize((labeller.image_size, labeller.image_size), Image.Resampling.BICUBIC)
        crops.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1))
    names, _ = labeller.classify(torch.stack(crops))
    right = [name in ACCEPTED[row["expected"]] for name, row in zip(names, rows, strict=True)]
    report = ", ".join(f"{row['expected']}->{name}" for name, row in zip(names, rows, strict=True))
    assert sum(right) >= NEEDED, f"{sum(right)} of {len(rows)} right ({report})"
