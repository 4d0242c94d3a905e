"""The labelling stage: after vectorizing, label every change polygon by CLIP and filter by the prompts.

Reads ``changes.gpkg``, crops each polygon from both dates, classifies the crops, and writes the
GeoPackage again (a temporary file renamed over it) with five more fields: ``class_before``,
``class_after``, ``score_before``, ``score_after`` and ``label``. With prompts, only the polygons
whose after class (``appeared``), before class (``disappeared``) or either class (``either``) is
a prompt are kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import shapely

from backend.errors import InputError, OutputError
from backend.labels.crops import batches, read_crops, square_windows
from backend.labels.labeller import Labeller, Labels
from backend.labels.vocabulary import clean_prompts
from backend.outputs.files import atomic_output
from backend.params import PROMPT_MATCHES
from backend.progress import CancelFn, ProgressFn, check_canceled, never_canceled, no_progress
from backend.raster.io import RasterPair

_log = logging.getLogger(__name__)

LABEL_FIELDS = ("class_before", "class_after", "score_before", "score_after", "label")


@dataclass(frozen=True)
class LabelResult:
    """What the stage did: polygons kept and dropped, how many per label, and the CLIP used."""

    kept: int
    dropped: int
    area_m2: float
    per_label: dict[str, int] = field(default_factory=dict)
    source: str = ""


def check_prompt_match(match: str) -> str:
    """``match`` if it is one of :data:`PROMPT_MATCHES`; otherwise an InputError listing them."""
    if match not in PROMPT_MATCHES:
        raise InputError(f"prompt match {match!r} is not one of {', '.join(PROMPT_MATCHES)}")
    return match


def keep_mask(labels: Labels, prompts: Sequence[str], match: str) -> np.ndarray:
    """Which polygons the prompts keep: all without prompts; else by the after, before or either class."""
    wanted = set(clean_prompts(prompts))
    count = len(labels.class_after)
    if not wanted:
        return np.ones(count, dtype=bool)
    after = np.array([name in wanted for name in labels.class_after], dtype=bool)
    before = np.array([name in wanted for name in labels.class_before], dtype=bool)
    chosen: np.ndarray = {"appeared": after, "disappeared": before, "either": after | before}[check_prompt_match(match)]
    return chosen


def label_changes(
    gpkg: Path,
    pair: RasterPair,
    labeller: Labeller,
    prompts: Sequence[str] = (),
    match: str = "appeared",
    *,
    layer: str = "changes",
    progress: ProgressFn = no_progress,
    is_canceled: CancelFn = never_canceled,
) -> LabelResult:
    """Label the polygons of ``gpkg`` (written by :func:`backend.outputs.vectorize.vectorize`) and filter them.

    Raises:
        InputError: A bad ``match``.
        OutputError: The GeoPackage cannot be read or written.
        CanceledError: ``is_canceled()`` turned true (the GeoPackage is left as it was).
    """
    check_prompt_match(match)
    try:
        meta, _, geometry, values = pyogrio.raw.read(str(gpkg), layer=layer)
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise OutputError(f"cannot read the change polygons {gpkg}: {exc}") from exc
    geoms = shapely.from_wkb(geometry) if geometry is not None else np.array([], dtype=object)
    windows = square_windows(shapely.bounds(geoms), pair.grid.transform) if len(geoms) else []
    parts: list[Labels] = []
    for start, chunk in batches(windows, labeller.batch_size):
        check_canceled(is_canceled)
        progress(start / max(len(windows), 1), f"labelling {len(windows)} polygons with CLIP")
        before, after = read_crops(pair, chunk, labeller.image_size)
        parts.append(labeller.label(before, after))
    check_canceled(is_canceled)
    labels = _join(parts)
    keep = keep_mask(labels, prompts, match)
    names = list(meta["fields"])
    columns = [np.asarray(v)[keep] for v in values]
    columns += [
        np.array(labels.class_before, dtype=object)[keep],
        np.array(labels.class_after, dtype=object)[keep],
        labels.score_before.astype(np.float64)[keep],
        labels.score_after.astype(np.float64)[keep],
        np.array(labels.label, dtype=object)[keep],
    ]
    try:
        with atomic_output(gpkg) as partial:
            pyogrio.raw.write(
                str(partial), geometry[keep] if len(geoms) else np.array([], dtype=object), columns,
                [*names, *LABEL_FIELDS], layer=layer, driver="GPKG", geometry_type=meta["geometry_type"],
                crs=meta["crs"], dataset_options={"VERSION": "1.2"},
            )  # fmt: skip
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise OutputError(f"cannot write the labelled polygons {gpkg}: {exc}") from exc
    kept_labels = [label for label, k in zip(labels.label, keep, strict=True) if k]
    area = float(np.asarray(values[names.index("area_m2")])[keep].sum()) if "area_m2" in names else 0.0
    dropped = int((~keep).sum())
    if prompts and dropped:
        wanted = ", ".join(clean_prompts(prompts))
        _log.info("prompts (%s, %s): kept %d polygons, dropped %d", wanted, match, len(kept_labels), dropped)
    progress(1.0, f"{len(kept_labels)} labelled polygons")
    return LabelResult(len(kept_labels), dropped, area, dict(Counter(kept_labels).most_common()), labeller.source)


def _join(parts: list[Labels]) -> Labels:
    if not parts:
        empty = np.zeros(0, dtype=np.float32)
        return Labels([], [], empty, empty.copy())
    return Labels(
        [n for p in parts for n in p.class_before],
        [n for p in parts for n in p.class_after],
        np.concatenate([p.score_before for p in parts]),
        np.concatenate([p.score_after for p in parts]),
    )
