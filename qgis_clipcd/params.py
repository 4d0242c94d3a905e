"""The parameters of one plugin run, and the ``python -m backend detect`` options they become.

The dock and the Processing algorithm both build a :class:`RunParams`; :class:`qgis_clipcd.engine.worker.Worker`
runs it. This module is plain Python (no QGIS, no backend import), so it can be tested anywhere.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

DEVICES = ("auto", "cpu", "cuda")
#: ``backend detect --tta``: the model card's choice, one pass, 4 mirrored, 8 turned and mirrored passes.
TTA_MODES = ("model", "none", "flips", "d4")
#: ``backend detect --prompt-match``: the polygons whose after class, before class or either class is a prompt.
PROMPT_MATCHES = ("appeared", "disappeared", "either")


@dataclass(frozen=True)
class RunParams:
    """One detection run as the worker sees it.

    Attributes:
        before: Path of the earlier raster (its CRS and grid are the outputs').
        after: Path of the later raster.
        out_dir: Folder the worker writes probability.tif, mask.tif, changes.gpkg and preview.png into.
        model: Model file; None uses the default model.
        prompts: Class names to look for; empty lets the model choose (automatic prompts).
        threshold: Change probability threshold in [0, 1]; None uses the model card's.
        min_area: Polygons smaller than this many square metres are dropped.
        device: "auto", "cpu" or "cuda".
        extent: (xmin, ymin, xmax, ymax) in the before raster's CRS; None uses the rasters' overlap.
        bands: The model's bands (red, green, blue) by 1-based number or by name (``B04``, ``red``);
            None lets the engine choose by the rasters' band names.
        tta: Test-time augmentation, one of :data:`TTA_MODES` (more accurate, 4x or 8x slower); "model"
            runs what the model card names.
        prompt_match: Which CLIP-labelled polygons the prompts keep, one of :data:`PROMPT_MATCHES`.
        labels: Label the polygons with CLIP when CLIP weights are present.
    """

    before: str
    after: str
    out_dir: str
    model: str | None = None
    prompts: tuple[str, ...] = ()
    threshold: float | None = None
    min_area: float = 0.0
    device: str = "auto"
    extent: tuple[float, float, float, float] | None = None
    bands: tuple[int | str, ...] | None = None
    tta: str = "model"
    prompt_match: str = "appeared"
    labels: bool = True

    def to_argv(self) -> list[str]:
        """The ``detect`` options for these parameters (without ``--json-progress``)."""
        argv = ["--before", self.before, "--after", self.after, "--out", self.out_dir]
        if self.model:
            argv += ["--model", self.model]
        if self.prompts:
            argv += ["--prompts", ",".join(self.prompts)]
            if self.prompt_match != "appeared":
                argv += ["--prompt-match", self.prompt_match]
        if not self.labels:
            argv.append("--no-labels")
        if self.threshold is not None:
            argv += ["--threshold", repr(float(self.threshold))]
        if self.min_area:
            argv += ["--min-area", repr(float(self.min_area))]
        if self.device != "auto":
            argv += ["--device", self.device]
        if self.extent is not None:
            argv += ["--extent", ",".join(repr(float(v)) for v in self.extent)]
        if self.bands is not None:
            argv += ["--bands", ",".join(str(b) for b in self.bands)]
        if self.tta != "model":
            argv += ["--tta", self.tta]
        return argv

    def command_line(self, python: str) -> str:
        """A shell-quoted command that runs the same detection by hand ("Copy as command")."""
        return shlex.join([python, "-m", "backend", "detect", *self.to_argv()])


def split_prompts(text: str) -> tuple[str, ...]:
    """Prompts typed as comma- or line-separated text, stripped, empties dropped."""
    return tuple(p.strip() for p in text.replace("\n", ",").split(",") if p.strip())


def parse_bands(text: str) -> tuple[int | str, ...] | None:
    """Bands typed as "r,g,b": 1-based numbers or names (``4,3,2``, ``B04,B03,B02``, ``red,green,blue``).

    Empty text gives None (the engine picks the bands by name). Names are checked by the engine,
    which knows the rasters' band descriptions.

    Raises:
        ValueError: when the text is not three numbers or names; the message says what to type.
    """
    if not text.strip():
        return None
    tokens = [token.strip() for token in text.split(",")]
    hint = "like 4,3,2 or B04,B03,B02 or red,green,blue"
    if len(tokens) != 3 or not all(tokens):
        raise ValueError(f"bands {text!r} must be three band numbers or names {hint}")
    values = tuple(int(token) if token.isdigit() else token for token in tokens)
    if any(value == 0 for value in values):
        raise ValueError(f"bands {text!r}: band numbers start at 1 ({hint})")
    return values
