"""One detection run, end to end: two rasters in, change rasters and polygons out.

Stages run in one direction: ``raster.io`` -> ``tiling`` -> ``predict`` -> ``outputs``
(``stitch`` -> ``write`` -> ``vectorize`` -> ``preview``) -> ``labels`` (CLIP names each polygon's
before and after, when CLIP weights are present). Every output is first written into a hidden staging folder
inside the output folder and moved into place only when the whole run succeeded, so an
error or a cancel never leaves a half-written or mixed set of files behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors

from backend.errors import OutputError
from backend.inference import model_source
from backend.inference.predict import Predictor, select_device
from backend.inference.tiling import tile_grid
from backend.inference.tta import PASSES
from backend.labels.labeller import Labeller, plan_labels
from backend.labels.stage import label_changes
from backend.model import ModelCard
from backend.outputs.preview import PreviewSampler, write_preview
from backend.outputs.stitch import Stitcher, to_mask
from backend.outputs.vectorize import vectorize
from backend.outputs.write import mask_writer, probability_writer
from backend.params import DetectParams
from backend.progress import CancelFn, ProgressFn, check_canceled, never_canceled, no_progress, scaled
from backend.raster import io
from backend.raster.bands import RGB
from backend.raster.pixel_size import PixelSize, range_warning
from backend.raster.pixel_size import describe as describe_pixel_size

_log = logging.getLogger(__name__)

OUTPUT_NAMES = ("probability.tif", "mask.tif", "changes.gpkg", "preview.png")


@dataclass(frozen=True)
class DetectResult:
    """What a run produced and how it went."""

    outputs: dict[str, Path]
    polygons: int
    changed_area_m2: float
    seconds: float
    tiles: int
    tiles_per_second: float
    device: str
    model: str
    threshold: float
    grid_size: tuple[int, int]
    pixel_size_m: PixelSize | None = None
    labels: dict[str, int] | None = None
    labelled_with: str | None = None
    dropped: int = 0

    def summary(self) -> str:
        """One human-readable paragraph for the end of a CLI run."""
        hectares = self.changed_area_m2 / 10_000
        labels = ""
        if self.labels is not None:
            top = ", ".join(f"{label} ({count})" for label, count in list(self.labels.items())[:3])
            dropped = f", {self.dropped} dropped by the prompts" if self.dropped else ""
            labels = f"labels by {self.labelled_with}: {top or 'none'}{dropped}; "
        return (
            f"{self.polygons} change polygons, {self.changed_area_m2:,.0f} m² ({hectares:,.2f} ha) changed; {labels}"
            f"pixels {describe_pixel_size(self.pixel_size_m)}; "
            f"{self.tiles} tiles in {self.seconds:.1f} s ({self.tiles_per_second:.1f} tiles/s on {self.device}); "
            f"model: {self.model}; threshold {self.threshold:g}; outputs in {self.outputs['mask'].parent}"
        )


def detect(
    params: DetectParams,
    progress: ProgressFn = no_progress,
    is_canceled: CancelFn = never_canceled,
    loaded: model_source.LoadedModel | None = None,
    labeller: Labeller | None = None,
) -> DetectResult:
    """Detect change between ``params.before`` and ``params.after``.

    ``loaded`` runs an already loaded model instead of ``params.model`` (tests, benchmarks,
    and the plugin when it keeps a model in memory between runs); ``labeller`` labels with that
    CLIP instead of the weights ``params`` names or finds (tests).

    Raises:
        ClipCDError: on bad input (the message names the value and the fix), or
            CanceledError when ``is_canceled()`` turned true; no outputs are left either way.
    """
    started = time.perf_counter()
    device = select_device(params.device)
    model_path = params.model if loaded is not None else model_source.choose(params.model, params.before)
    known = loaded.card if loaded is not None else model_source.peek_card(model_path)
    text_side = model_source.accepts_prompts(known)
    labeller = labeller or plan_labels(params, text_side, device)  # refuses before any work
    with (
        rasterio.Env(GDAL_CACHEMAX=io.block_cache_bytes([params.before, params.after], params.tile or 256)),
        io.RasterPair(
            params.before,
            params.after,
            extent=params.extent,
            bands=params.bands,
            stretch=params.stretch,  # type: ignore[arg-type]  # checked by DetectParams
            model_bands=tuple(getattr(known, "bands", None) or RGB),
            input_stretch=getattr(known, "input_stretch", None),
            s2_offset=params.s2_offset,
        ) as pair,
    ):
        loaded = loaded or model_source.resolve(model_path, device)
        card = loaded.card
        warn_outside_range(pair.pixel_size_m, card)
        tile, overlap = params.resolve_tiling(card.tile_size, card.overlap)
        threshold = params.threshold if params.threshold is not None else card.threshold
        tta = params.resolve_tta(card.tta)
        if tta != "none":
            why = "the model card's" if params.tta == "model" else "asked"
            _log.info("test-time augmentation: %s (%s; %d passes per tile)", tta, why, PASSES[tta])
        grid = pair.grid
        tiles = tile_grid(grid.height, grid.width, tile, overlap)
        _log.info(
            "grid %d x %d px in %s; %d tiles of %d px (overlap %d) on %s; model: %s",
            grid.width,
            grid.height,
            grid.crs,
            len(tiles),
            tile,
            overlap,
            device,
            loaded.description,
        )
        staging, created = _make_staging(params.out_dir)
        try:
            progress(0.0, f"{len(tiles)} tiles on {device}")
            prompts = params.prompts if text_side else ()  # otherwise they act through the labels
            predictor = Predictor(loaded.model, card.mean, card.std, device, params.batch_size, prompts, tta=tta)
            with (
                probability_writer(staging / "probability.tif", grid, params.probability_dtype) as prob_out,
                mask_writer(staging / "mask.tif", grid) as mask_out,
            ):
                sampler = PreviewSampler(pair, grid.height, grid.width)

                def sink(row_start: int, probability: np.ndarray, valid: np.ndarray) -> None:
                    mask = to_mask(probability, valid, threshold)
                    prob_out.write_rows(row_start, probability, valid)
                    mask_out.write_rows(row_start, mask)
                    sampler.add_mask_rows(row_start, mask)

                stitcher = Stitcher(grid.height, grid.width, tile, overlap, sink)
                stats = predictor.run(sampler, tiles, stitcher, scaled(progress, 0.0, 0.85), is_canceled)
                stitcher.finish()
            vectors = vectorize(
                staging / "mask.tif",
                staging / "probability.tif",
                staging / "changes.gpkg",
                min_area=params.min_area,
                simplify=params.simplify,
                cleanup=params.cleanup,
                progress=scaled(progress, 0.85, 0.9 if labeller else 0.98),
                is_canceled=is_canceled,
            )
            labelled = None
            if labeller is not None:
                labelled = label_changes(
                    staging / "changes.gpkg",
                    pair,
                    labeller,
                    params.prompts,
                    params.prompt_match,
                    progress=scaled(progress, 0.9, 0.98),
                    is_canceled=is_canceled,
                )
            if params.write_preview:
                write_preview(sampler, staging / "preview.png")
            check_canceled(is_canceled)
            outputs = _publish(staging, params.out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(params.out_dir, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    progress(1.0, "done")
    return DetectResult(
        outputs=outputs,
        polygons=labelled.kept if labelled else vectors.count,
        changed_area_m2=labelled.area_m2 if labelled else vectors.area_m2,
        seconds=time.perf_counter() - started,
        tiles=stats.tiles,
        tiles_per_second=stats.tiles_per_second,
        device=stats.device,
        model=loaded.description,
        threshold=threshold,
        grid_size=(grid.width, grid.height),
        pixel_size_m=pair.pixel_size_m,
        labels=labelled.per_label if labelled else None,
        labelled_with=labelled.source if labelled else None,
        dropped=labelled.dropped if labelled else 0,
    )


def warn_outside_range(size: PixelSize | None, card: ModelCard) -> str | None:
    """Log the pixel-size warning (with ``pixel_size_m`` and ``model_range_m`` as fields) when it applies."""
    span = getattr(card, "pixel_size_range_m", None)  # cards written before the range was recorded have none
    message = range_warning(size, span)
    if message is not None and size is not None:
        fields = {"pixel_size_m": [round(v, 3) for v in size], "model_range_m": span}
        _log.warning("%s", message, extra={"fields": fields})
    return message


def _make_staging(out_dir: Path) -> tuple[Path, bool]:
    """Create the output folder (if needed) and a hidden staging folder inside it, or say why not.

    Returns the staging folder and whether the output folder was created by this run (so a
    failed run removes it again instead of leaving an empty folder behind).
    """
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".clipcd-", dir=out_dir)), created
    except OSError as exc:
        raise OutputError(
            f"cannot write to the output folder {str(out_dir)!r} ({exc.strerror or exc}); choose another --out."
        ) from exc


def _publish(staging: Path, out_dir: Path) -> dict[str, Path]:
    """Replace the outputs in ``out_dir`` with this run's: all of them, or none.

    The previous run's files are moved aside into the staging folder first, so an output this
    run did not make (preview.png with ``write_preview=False``) does not linger, and a failure
    half-way puts everything back as it was.
    """
    for name in OUTPUT_NAMES:
        if (out_dir / name).is_dir():
            raise OutputError(f"{out_dir / name} is a folder, not a file; remove it or choose another --out.")
    previous = staging / "previous"
    previous.mkdir()
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for name in OUTPUT_NAMES:
            if (out_dir / name).exists():
                (out_dir / name).replace(previous / name)
                moved_old.append(name)
        for name in OUTPUT_NAMES:
            if (staging / name).exists():
                (staging / name).replace(out_dir / name)
                moved_new.append(name)
    except OSError as exc:
        for name in moved_new:
            (out_dir / name).unlink(missing_ok=True)
        for name in moved_old:
            (previous / name).replace(out_dir / name)
        raise OutputError(
            f"cannot move the outputs into {out_dir} ({exc}); is a file there open in another program?"
        ) from exc
    return {name.split(".")[0]: out_dir / name for name in moved_new}
