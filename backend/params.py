"""The parameters of one detection run, validated before any work starts.

The CLI, the QGIS dock widget and the Processing algorithm all build a
:class:`DetectParams`; :func:`backend.inference.pipeline.detect` consumes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.errors import InputError

#: Test-time augmentation modes (``backend.inference.tta``): one pass, 4 mirrored copies, 8 turned and mirrored copies.
TTA_MODES = ("none", "flips", "d4")
#: What a run may ask for: a mode, or "model" (the model card's ``tta``, the mode its figures were measured with).
TTA_CHOICES = ("model", *TTA_MODES)


def check_tta(mode: str, choices: tuple[str, ...] = TTA_MODES) -> str:
    """``mode`` itself if it is one of ``choices``; otherwise an :class:`InputError` that lists them."""
    if mode not in choices:
        raise InputError(f"tta={mode!r} is not one of {', '.join(choices)}.")
    return mode


#: Which labelled polygons the prompts keep (``backend.labels.stage``): those whose after class is a
#: prompt (something appeared), whose before class is (something disappeared), or either.
PROMPT_MATCHES = ("appeared", "disappeared", "either")

#: How raw values become the model's input (``backend.raster.transform``, ``backend.raster.radiometry``).
STRETCH_CHOICES = ("auto", "percentile", "none", "sentinel-2", "landsat")

Device = Literal["auto", "cpu", "cuda", "mps"]
ProbabilityDtype = Literal["uint8", "float16"]
Extent = tuple[float, float, float, float]


@dataclass(frozen=True)
class DetectParams:
    """Everything one detection run needs.

    Attributes:
        before: Raster of the earlier date; its CRS and pixel grid are the output's.
        after: Raster of the later date; aligned onto ``before``'s grid when they differ.
        out_dir: Folder that receives probability.tif, mask.tif, changes.gpkg and preview.png.
        model: Model file (.safetensors with a model card); None uses the default model.
        prompts: Class names the analyst is looking for ("building", "road"); empty uses the
            model's own prompt source.
        threshold: Probability above which a pixel is change, in [0, 1]; None uses the card's.
        min_area: Polygons smaller than this many square metres are dropped.
        simplify: Simplification tolerance in the raster CRS's units (0 keeps pixel edges).
        cleanup: Radius in pixels of a morphological opening then closing of the mask (0: none).
        device: "auto" picks cuda, then mps, then cpu.
        tile: Tile size in pixels; None uses the card's.
        overlap: Overlap between neighbouring tiles in pixels; None uses the card's.
        extent: (xmin, ymin, xmax, ymax) in the before raster's CRS; None uses the overlap
            of the two rasters.
        bands: The three bands that feed the model, by 1-based number or by name (a band
            description such as "B04", a band code, or a colour word such as "red"), the same for
            both rasters; None matches the model's bands to the rasters' band descriptions, else
            RGB by colour interpretation, else the first three bands.
        stretch: How raw values become the model's input: "auto" (uint8 / 255; other types by the
            card's sensor rule, else a 2-98 % stretch), "percentile", "none", "sentinel-2", "landsat".
        s2_offset: Sentinel-2's DN offset (0, or -1000 from processing baseline 04.00) for rasters
            whose metadata does not state it; None means 0.
        batch_size: Tile pairs per forward pass (halved automatically on CUDA out-of-memory).
        tta: Test-time augmentation: "none", "flips" (4 passes), "d4" (8 passes), or "model": the model
            card's choice (``ModelCard.tta``); see backend.inference.tta.
        write_preview: Also write preview.png (before | after | change overlay).
        labels: Label each change polygon "before → after" with CLIP (``backend.labels``) when CLIP
            weights are present.
        clip: The CLIP weights that label: a catalogue name or one given to ``clip add``; None takes
            the preferred weights present.
        prompt_match: With prompts, keep the polygons whose after class ("appeared"), before class
            ("disappeared") or either class ("either") is a prompt.
        probability_dtype: probability.tif as uint8 (round(p * 255)) or float16 (p itself).
    """

    before: Path
    after: Path
    out_dir: Path
    model: Path | None = None
    prompts: tuple[str, ...] = ()
    threshold: float | None = None
    min_area: float = 0.0
    simplify: float = 0.0
    cleanup: int = 0
    device: Device = "auto"
    tile: int | None = None
    overlap: int | None = None
    extent: Extent | None = None
    bands: tuple[int | str, ...] | None = None
    stretch: str = "auto"
    s2_offset: float | None = None
    batch_size: int = 8
    tta: str = "model"
    write_preview: bool = True
    probability_dtype: ProbabilityDtype = "uint8"
    labels: bool = True
    clip: str | None = None
    prompt_match: str = "appeared"

    def __post_init__(self) -> None:
        """Refuse values that cannot work, naming the value and the fix."""
        if self.threshold is not None and not (0.0 <= self.threshold <= 1.0):
            raise InputError(f"threshold={self.threshold} is outside [0, 1]; pass e.g. --threshold 0.5.")
        if self.min_area < 0 or not math.isfinite(self.min_area):
            raise InputError(f"min_area={self.min_area} must be a non-negative number of square metres.")
        if self.simplify < 0 or not math.isfinite(self.simplify):
            raise InputError(f"simplify={self.simplify} must be a finite number >= 0 (0 keeps pixel edges).")
        if self.cleanup < 0:
            raise InputError(f"cleanup={self.cleanup} must be a radius in pixels >= 0.")
        if self.tile is not None and (self.tile < 32 or self.tile % 32):
            nearest = max(32, round(self.tile / 32) * 32)
            raise InputError(f"tile={self.tile} must be a multiple of 32 and at least 32 pixels; try --tile {nearest}.")
        if self.overlap is not None and self.overlap < 0:
            raise InputError(f"overlap={self.overlap} must be >= 0 pixels.")
        if self.batch_size < 1:
            raise InputError(f"batch_size={self.batch_size} must be >= 1.")
        if self.extent is not None:
            xmin, ymin, xmax, ymax = self.extent
            if not all(math.isfinite(v) for v in self.extent):
                raise InputError(f"extent={self.extent} holds a value that is not a finite number.")
            if xmax <= xmin or ymax <= ymin:
                raise InputError(
                    f"extent={self.extent} has zero or negative size; "
                    "give xmin,ymin,xmax,ymax with xmax > xmin and ymax > ymin."
                )
        if self.bands is not None and (
            len(self.bands) != 3 or any(b < 1 if isinstance(b, int) else not b.strip() for b in self.bands)
        ):
            raise InputError(
                f"bands={self.bands} must be three 1-based band numbers or band names, e.g. --bands 1,2,3 "
                "or --bands B04,B03,B02 or --bands red,green,blue."
            )
        if self.stretch not in STRETCH_CHOICES:
            raise InputError(f"stretch={self.stretch!r} is not one of {', '.join(STRETCH_CHOICES)}.")
        if self.s2_offset not in (None, 0, -1000):
            raise InputError(f"s2_offset={self.s2_offset} must be 0 or -1000 (processing baseline 04.00 and later).")
        if self.probability_dtype not in ("uint8", "float16"):
            raise InputError(f"probability_dtype={self.probability_dtype!r} is not one of uint8, float16.")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise InputError(f"device={self.device!r} is not one of auto, cpu, cuda, mps.")
        check_tta(self.tta, TTA_CHOICES)
        if self.prompt_match not in PROMPT_MATCHES:
            raise InputError(f"prompt_match={self.prompt_match!r} is not one of {', '.join(PROMPT_MATCHES)}.")
        if self.clip is not None and not self.labels:
            raise InputError(f"clip={self.clip!r} names weights for labels, but labels are off (--no-labels).")

    def resolve_tta(self, card_tta: str) -> str:
        """The test-time augmentation to run: the asked mode, or the card's for "model"."""
        return card_tta if self.tta == "model" else self.tta

    def resolve_tiling(self, card_tile: int, card_overlap: int) -> tuple[int, int]:
        """Tile size and overlap for this run: the user's, else the model card's.

        A tile smaller than the card's keeps at most a quarter of it as overlap unless the user
        set one. The overlap must stay under half the tile, so every pixel has a tile that sees
        it away from the tile's edges.
        """
        tile = self.tile or card_tile
        overlap = self.overlap if self.overlap is not None else min(card_overlap, tile // 4)
        if overlap >= tile // 2:
            raise InputError(f"--overlap {overlap} must be less than half of --tile {tile}; try --overlap {tile // 4}.")
        return tile, overlap
