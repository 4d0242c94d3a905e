"""The predictor: batching, logit reduction, skipping empty tiles, cancel, CUDA out-of-memory back-off."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
import torch

from backend.errors import CanceledError, ClipCDError, InputError
from backend.inference.predict import Predictor, change_logit, select_device
from backend.inference.tiling import Tile, tile_grid


class PositionReader:
    """A fake RasterPair whose image A encodes the global row, image B the global column."""

    def __init__(self, height: int, width: int, invalid_rows: int = 0) -> None:
        self.height, self.width, self.invalid_rows = height, width, invalid_rows
        self.reads = 0

    def read(self, window):  # type: ignore[no-untyped-def]
        self.reads += 1
        rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.float32)
        cols = np.arange(window.col_off, window.col_off + window.width, dtype=np.float32)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        a = np.broadcast_to(rr / 1000.0, (3, *rr.shape)).copy()
        b = np.broadcast_to(cc / 1000.0, (3, *cc.shape)).copy()
        valid = (rr >= self.invalid_rows) & (rr < self.height) & (cc < self.width)
        return a, b, valid


class Collect:
    def __init__(self) -> None:
        self.items: list[tuple[Tile, np.ndarray, np.ndarray]] = []

    def add(self, tile: Tile, logit: np.ndarray, valid: np.ndarray) -> None:
        self.items.append((tile, logit.copy(), valid.copy()))


class TwoChannel(torch.nn.Module):
    """Logits whose change minus no-change equals image_a - image_b (first band)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        diff = image_a[:, :1] - image_b[:, :1]
        return torch.cat([torch.zeros_like(diff), diff], dim=1)


def test_change_logit_two_and_one_channel() -> None:
    logits = torch.tensor([[[[1.0]], [[3.0]]]])
    assert change_logit(logits).item() == pytest.approx(2.0)
    assert torch.sigmoid(change_logit(logits)).item() == pytest.approx(torch.softmax(logits, 1)[0, 1].item())
    assert change_logit(torch.full((1, 1, 2, 2), -4.0)).flatten().tolist() == [-4.0] * 4
    with pytest.raises(ClipCDError, match="shape"):
        change_logit(torch.zeros(1, 3, 2, 2))


def test_tiles_arrive_in_order_with_the_model_output() -> None:
    tiles = tile_grid(300, 200, 64, 16)
    reader, sink, model = PositionReader(300, 200), Collect(), TwoChannel()
    stats = Predictor(model, [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=5).run(reader, tiles, sink)
    assert [t.index for t, _, _ in sink.items] == [t.index for t in tiles]
    for tile, logit, _valid in sink.items:
        rows = np.arange(tile.row_off, tile.row_off + tile.size)[:, None] / 1000.0
        cols = np.arange(tile.col_off, tile.col_off + tile.size)[None, :] / 1000.0
        np.testing.assert_allclose(logit, rows - cols, atol=1e-6)
    assert stats.tiles == len(tiles) and stats.tiles_run == len(tiles)
    assert model.calls == -(-len(tiles) // 5)


def test_normalisation_uses_the_card_statistics() -> None:
    tiles = [Tile(0, 0, 0, 32)]
    sink = Collect()
    Predictor(TwoChannel(), [0.5] * 3, [0.25] * 3, torch.device("cpu")).run(PositionReader(32, 32), tiles, sink)
    rows = np.arange(32)[:, None] / 1000.0
    cols = np.arange(32)[None, :] / 1000.0
    np.testing.assert_allclose(sink.items[0][1], (rows - cols) / 0.25, atol=1e-5)


def test_tiles_without_valid_pixels_skip_the_model() -> None:
    tiles = tile_grid(128, 64, 64, 0)  # two tile rows; the first is all invalid
    model, sink = TwoChannel(), Collect()
    stats = Predictor(model, [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=1).run(
        PositionReader(128, 64, invalid_rows=64), tiles, sink
    )
    assert stats.tiles_run == 1 and model.calls == 1
    assert not sink.items[0][2].any() and sink.items[1][2].all()


def test_cancel_stops_within_one_batch() -> None:
    tiles = tile_grid(512, 512, 64, 0)
    model = TwoChannel()
    checks = iter(range(100))
    with pytest.raises(CanceledError):
        Predictor(model, [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=4).run(
            PositionReader(512, 512), tiles, Collect(), is_canceled=lambda: next(checks) >= 2
        )
    assert model.calls == 2


class OutOfMemoryOnce(TwoChannel):
    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(image_a.shape[0])
        if len(self.batch_sizes) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(image_a, image_b)


def test_out_of_memory_halves_the_batch_and_retries() -> None:
    tiles = tile_grid(256, 256, 64, 0)  # 16 tiles
    model, sink = OutOfMemoryOnce(), Collect()
    predictor = Predictor(model, [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=8)
    stats = predictor.run(PositionReader(256, 256), tiles, sink)
    assert model.batch_sizes[:3] == [8, 4, 4]
    assert all(size <= 4 for size in model.batch_sizes[1:])
    assert stats.final_batch_size == 4
    assert len(sink.items) == 16
    tile, logit, _ = sink.items[-1]
    assert logit[0, 0] == pytest.approx((tile.row_off - tile.col_off) / 1000.0, abs=1e-6)


class AlwaysOutOfMemory(TwoChannel):
    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")


def test_out_of_memory_on_one_tile_says_what_to_do() -> None:
    with pytest.raises(ClipCDError, match="smaller --tile or --device cpu"):
        Predictor(AlwaysOutOfMemory(), [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=2).run(
            PositionReader(64, 64), [Tile(0, 0, 0, 64)], Collect()
        )


class FailingReader(PositionReader):
    def read(self, window):  # type: ignore[no-untyped-def]
        if self.reads == 3:
            raise OSError("disk went away")
        return super().read(window)


def test_a_reader_failure_reaches_the_caller() -> None:
    with pytest.raises(OSError, match="disk went away"):
        Predictor(TwoChannel(), [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=1).run(
            FailingReader(256, 256), tile_grid(256, 256, 64, 0), Collect()
        )


class FailingSink(Collect):
    def add(self, tile: Tile, logit: np.ndarray, valid: np.ndarray) -> None:
        if len(self.items) == 2:
            raise OSError("no space left on device")
        super().add(tile, logit, valid)


def test_a_writer_failure_reaches_the_caller() -> None:
    with pytest.raises(OSError, match="no space left"):
        Predictor(TwoChannel(), [0.0] * 3, [1.0] * 3, torch.device("cpu"), batch_size=1).run(
            PositionReader(512, 512), tile_grid(512, 512, 64, 0), FailingSink()
        )


def test_device_selection() -> None:
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            select_device("cuda")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux-only")
def test_on_cpu_the_helper_threads_yield_to_the_model() -> None:
    """Reader and writer run at a lower priority than the thread running the model (Linux)."""

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    class NiceReader(PositionReader):
        def read(self, window):  # type: ignore[no-untyped-def]
            seen["reader"] = nice()
            return super().read(window)

    class NiceSink(Collect):
        def add(self, tile: Tile, logit: np.ndarray, valid: np.ndarray) -> None:
            seen["writer"] = nice()

    seen: dict[str, int] = {}
    Predictor(TwoChannel(), [0.0] * 3, [1.0] * 3, torch.device("cpu")).run(
        NiceReader(64, 64), tile_grid(64, 64, 64, 16), NiceSink()
    )
    assert seen["reader"] > nice() and seen["writer"] > nice(), (seen, nice())
