"""Run a change model over tiles: read ahead, batch, infer, hand logits to the stitcher.

Three threads form a short pipeline so the model never waits:

- a *reader* reads and normalises the next batches of tile pairs (GDAL releases the GIL);
- the calling thread runs the model (torch releases the GIL inside its kernels);
- a *writer* thread blends the logits into the stitcher, whose sink writes finished rows to disk.

Any torch module with ``forward(image_a, image_b) -> logits`` works; logits are ``(B, 2, H, W)``
(no-change, change) or ``(B, 1, H, W)`` (change). On CUDA out-of-memory the batch is split in
halves and retried, down to one tile pair.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch

from backend.errors import ClipCDError, InputError
from backend.inference.tiling import Tile
from backend.inference.tta import averaged_logit
from backend.params import Device, check_tta
from backend.progress import CancelFn, ProgressFn, check_canceled, never_canceled, no_progress
from backend.raster.transform import normalise

_log = logging.getLogger(__name__)

# A batch as the reader hands it over: tiles, stacked images (B, 3, h, w) and validity (B, h, w).
Batch = tuple[list[Tile], np.ndarray, np.ndarray, np.ndarray]
_DONE = object()  # end-of-stream marker on the queues


class TileReader(Protocol):
    """What the predictor needs from :class:`backend.raster.io.RasterPair`."""

    def read(self, window: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return image_a, image_b (3, h, w) in [0, 1] and valid (h, w) for a window."""
        ...


class TileSink(Protocol):
    """What the predictor needs from :class:`backend.outputs.stitch.Stitcher`."""

    def add(self, tile: Tile, logit: np.ndarray, valid: np.ndarray) -> None:
        """Blend one tile's change logit into the output."""
        ...


@dataclass(frozen=True)
class PredictStats:
    """What one prediction run did."""

    tiles: int
    tiles_run: int
    seconds: float
    model_seconds: float
    device: str
    final_batch_size: int

    @property
    def tiles_per_second(self) -> float:
        """End-to-end throughput, all tiles counted."""
        return self.tiles / self.seconds if self.seconds > 0 else float("inf")


def select_device(requested: Device = "auto") -> torch.device:
    """Pick the torch device: cuda, then mps, then cpu for "auto"; refuse unavailable ones."""
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device='cuda' was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device auto or cpu, "
            "or run `python -m backend doctor`."
        )
    if requested == "mps" and not has_mps:
        raise InputError("device='mps' was asked for but this torch has no MPS backend; use --device auto or cpu.")
    return torch.device(requested)


def change_logit(logits: torch.Tensor) -> torch.Tensor:
    """Reduce model logits to one change logit per pixel, ``(B, H, W)``.

    Two channels (no-change, change) give ``l1 - l0``, whose sigmoid equals the softmax's
    change probability; one channel is taken as the change logit itself.
    """
    if logits.ndim != 4 or logits.shape[1] not in (1, 2):
        raise ClipCDError(
            f"the model returned logits of shape {tuple(logits.shape)}; expected (B, 1, H, W) or (B, 2, H, W)."
        )
    if logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    return logits[:, 0]


class Predictor:
    """Batches tile pairs through a model on one device.

    Args:
        model: Module called as ``model(image_a, image_b)`` or, with prompts,
            ``model(image_a, image_b, prompts=[...])``.
        mean: Per-band mean in [0, 1] image units, from the model card.
        std: Per-band standard deviation in [0, 1] image units.
        device: Where the model runs.
        batch_size: Tile pairs per forward pass; halved on CUDA out-of-memory.
        prompts: The analyst's class names, or empty for the model's own prompt source.
        tta: Test-time augmentation, one of :data:`backend.params.TTA_MODES` (``"none"``: one pass).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        batch_size: int = 8,
        prompts: Sequence[str] = (),
        tta: str = "none",
    ) -> None:
        self.tta = check_tta(tta)
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.prompts = list(prompts)
        self._mean = tuple(float(m) for m in mean)
        self._std = tuple(float(s) for s in std)

    def infer(self, image_a: np.ndarray, image_b: np.ndarray) -> np.ndarray:
        """Change logits ``(B, h, w)`` float32 for stacked images ``(B, 3, h, w)`` in [0, 1]."""
        a = torch.from_numpy(image_a).to(self.device, non_blocking=True)
        b = torch.from_numpy(image_b).to(self.device, non_blocking=True)
        a = normalise(a, self._mean, self._std)
        b = normalise(b, self._mean, self._std)
        return self._forward_with_backoff(a, b)

    def _forward_with_backoff(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        """Run the model, splitting the batch in halves on CUDA out-of-memory."""
        chunk = min(self.batch_size, a.shape[0])
        outputs: list[np.ndarray] = []
        start = 0
        while start < a.shape[0]:
            stop = min(start + chunk, a.shape[0])
            try:
                outputs.append(self._forward(a[start:stop], b[start:stop]))
            except torch.cuda.OutOfMemoryError as exc:
                if chunk == 1:
                    raise ClipCDError(
                        "the GPU ran out of memory on a single tile pair; use a smaller --tile or --device cpu."
                    ) from exc
                chunk = max(1, chunk // 2)
                self.batch_size = chunk
                _log.warning("GPU out of memory: retrying with batches of %d tile pairs", chunk)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start = stop
        return np.concatenate(outputs, axis=0)

    def _forward(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), _autocast(self.device):
            logit = averaged_logit(self._logit, a, b, self.tta)
        if logit.shape[-2:] != a.shape[-2:]:
            raise ClipCDError(
                f"the model returned {tuple(logit.shape[-2:])} pixels for {tuple(a.shape[-2:])} input; "
                "a change model must return logits at its input size."
            )
        return logit.float().cpu().numpy()

    def _logit(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = self.model(a, b, prompts=self.prompts) if self.prompts else self.model(a, b)
        return change_logit(logits)

    def run(
        self,
        reader: TileReader,
        tiles: Sequence[Tile],
        sink: TileSink,
        progress: ProgressFn = no_progress,
        is_canceled: CancelFn = never_canceled,
    ) -> PredictStats:
        """Predict every tile in order and hand each change logit to ``sink``.

        Tiles without a single valid pixel skip the model. A cancel request stops the run
        within one batch with :class:`~backend.errors.CanceledError`.
        """
        started = time.perf_counter()
        model_seconds = 0.0
        tiles_run = 0
        done = 0
        stop = threading.Event()
        batches: queue.Queue[object] = queue.Queue(maxsize=2)
        results: queue.Queue[object] = queue.Queue(maxsize=2)
        on_cpu = self.device.type == "cpu"
        reader_thread = _Worker("clipcd-reader", stop, on_cpu, _produce, reader, tiles, self.batch_size, batches, stop)
        writer_thread = _Worker("clipcd-writer", stop, on_cpu, _consume, sink, results, stop)
        reader_thread.start()
        writer_thread.start()
        try:
            for batch_tiles, image_a, image_b, valid in _drain(batches, reader_thread, writer_thread):
                check_canceled(is_canceled)
                run_mask = valid.reshape(len(batch_tiles), -1).any(axis=1)
                logits = np.zeros(valid.shape, dtype=np.float32)
                if run_mask.any():
                    tick = time.perf_counter()
                    logits[run_mask] = self.infer(image_a[run_mask], image_b[run_mask])
                    model_seconds += time.perf_counter() - tick
                    tiles_run += int(run_mask.sum())
                _put(results, (batch_tiles, logits, valid), stop)
                writer_thread.raise_error()
                done += len(batch_tiles)
                progress(done / max(len(tiles), 1), f"tile {done}/{len(tiles)}")
            _put(results, _DONE, stop)
            writer_thread.join()
            writer_thread.raise_error()
        finally:
            # Both threads check ``stop`` after each item, so they end soon; they must end before
            # the caller closes the datasets and writers they use.
            stop.set()
            reader_thread.join()
            writer_thread.join()
        return PredictStats(
            tiles=len(tiles),
            tiles_run=tiles_run,
            seconds=time.perf_counter() - started,
            model_seconds=model_seconds,
            device=str(self.device),
            final_batch_size=self.batch_size,
        )


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA where supported (fp16 otherwise); nothing elsewhere."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class _Worker(threading.Thread):
    """A daemon thread that keeps the exception its target raised, for the caller to re-raise."""

    def __init__(
        self, name: str, stop: threading.Event, yield_cpu: bool, target: Callable[..., None], *args: Any
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.yield_cpu = yield_cpu  # run below the model's threads' priority (see _lower_thread_priority)
        self._stop_event = stop
        self._work = target
        self._work_args = args
        self.error: BaseException | None = None

    def run(self) -> None:
        if self.yield_cpu:
            _lower_thread_priority()
        try:
            self._work(*self._work_args)
        except BaseException as exc:  # re-raised in the calling thread by raise_error()
            self.error = exc
            self._stop_event.set()

    def raise_error(self) -> None:
        """Re-raise the target's exception, if it failed."""
        if self.error is not None:
            raise self.error


def _lower_thread_priority(increment: int = 10) -> None:
    """Lower the calling thread's CPU priority (Linux; elsewhere nothing happens).

    On CPU the model's OpenMP threads use every core and meet at a barrier after each kernel, so a
    helper thread that takes a core from one of them stalls them all. At a lower priority the
    helpers mostly run in the gaps between kernels (on this project's noisy 2-core machines, paired
    runs gave a mean tile-stage efficiency of 0.88 against 0.86 without). On Linux a thread id is a
    valid ``setpriority`` target; elsewhere it could name another process, so nothing is done.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:  # e.g. a sandbox that forbids it: run at normal priority
        _log.debug("could not lower helper thread priority: %s", exc)


def _put(q: queue.Queue[object], item: object, stop: threading.Event) -> None:
    """Put without blocking forever once the run is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _produce(
    reader: TileReader, tiles: Sequence[Tile], batch_size: int, out: queue.Queue[object], stop: threading.Event
) -> None:
    """Reader thread: read tile pairs in order and queue them in batches."""
    for first in range(0, len(tiles), batch_size):
        batch_tiles = list(tiles[first : first + batch_size])
        reads = [reader.read(tile.window) for tile in batch_tiles]
        if stop.is_set():
            return
        image_a = np.stack([r[0] for r in reads]).astype(np.float32, copy=False)
        image_b = np.stack([r[1] for r in reads]).astype(np.float32, copy=False)
        valid = np.stack([r[2] for r in reads])
        _put(out, (batch_tiles, image_a, image_b, valid), stop)
    _put(out, _DONE, stop)


def _drain(batches: queue.Queue[object], reader: _Worker, writer: _Worker) -> Iterator[Batch]:
    """Yield the reader's batches until it is done; re-raise a helper thread's failure here."""
    while True:
        try:
            item = batches.get(timeout=0.1)
        except queue.Empty:
            reader.raise_error()
            writer.raise_error()
            if not reader.is_alive() and batches.empty():  # stopped early: the caller is canceling
                raise ClipCDError("the tile reader stopped without finishing; see the log for why.") from None
            continue
        if item is _DONE:
            return
        yield item  # type: ignore[misc]


def _consume(sink: TileSink, results: queue.Queue[object], stop: threading.Event) -> None:
    """Writer thread: blend logits into the sink in tile order."""
    while not stop.is_set():
        try:
            item = results.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _DONE:
            return
        batch_tiles, logits, valids = cast(tuple[list[Tile], np.ndarray, np.ndarray], item)
        for tile, logit, tile_valid in zip(batch_tiles, logits, valids, strict=True):
            sink.add(tile, logit, tile_valid)
