"""``python -m backend batch``: pairs in a CSV or a folder, failures recorded, resume after a kill, refusals."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from backend.errors import InputError
from backend.inference.batch import DONE_MARKER, read_pairs
from backend.inference.pipeline import detect
from backend.params import DetectParams
from tests.conftest import REPO_ROOT
from tests.rasters import utm_transform, write_raster


def make_pair(folder: Path, name: str, offset: int, size: int = 128) -> tuple[Path, Path]:
    """A 0.5 m pair: a bright block appears at a place that depends on ``offset``."""
    before = np.full((3, size, size), 70, dtype=np.uint8)
    before[1] = 95
    after = before.copy()
    after[:, 20 + offset : 60 + offset, 30:70] = 235
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_raster(folder / f"{name}_before.tif", before, transform=utm_transform(res=0.5)),
        write_raster(folder / f"{name}_after.tif", after, transform=utm_transform(res=0.5)),
    )


def write_pairs_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def batch(*args: str | Path, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    argv = [sys.executable, "-m", "backend", "batch", *map(str, args)]
    if not wait:
        return subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)


def summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


def same_outputs(a: Path, b: Path) -> None:
    """Two runs' masks and polygons are equal."""
    with rasterio.open(a / "mask.tif") as first, rasterio.open(b / "mask.tif") as second:
        assert np.array_equal(first.read(), second.read())
    assert pyogrio.raw.read(a / "changes.gpkg")[2].tolist() == pyogrio.raw.read(b / "changes.gpkg")[2].tolist()


def test_two_pairs_done_one_failed_exit_3(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = make_pair(data, "p1", 0), make_pair(data, "p2", 30)
    far = write_raster(data / "far.tif", np.full((3, 64, 64), 70, np.uint8), transform=utm_transform(col=5000, res=0.5))
    pairs = write_pairs_csv(tmp_path / "pairs.csv", [
        {"id": "p1", "before": "data/p1_before.tif", "after": "data/p1_after.tif", "threshold": ""},
        {"id": "broken", "before": "data/p1_before.tif", "after": str(far), "threshold": ""},
        {"id": "p2", "before": str(second[0]), "after": str(second[1]), "threshold": "0.4"},
    ])  # fmt: skip
    out = tmp_path / "out"
    result = batch(pairs, "--out", out, "--json-progress")
    assert result.returncode == 3, result.stdout + result.stderr
    rows = summary(out)
    assert [rows[i]["status"] for i in ("p1", "broken", "p2")] == ["done", "failed", "done"]
    assert "do not overlap" in rows["broken"]["error"] and not (out / "broken").exists()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1] == {"event": "done", "done": 2, "skipped": 0, "failed": 1, "summary": str(out / "summary.csv")}
    assert [e["id"] for e in events if e["event"] == "pair"] == ["p1", "broken", "p2"]
    for pair_id, (before, after), threshold in (("p1", first, None), ("p2", second, 0.4)):
        single = tmp_path / f"single-{pair_id}"
        detect(DetectParams(before=before, after=after, out_dir=single, threshold=threshold))
        same_outputs(out / pair_id, single)
        assert (out / pair_id / DONE_MARKER).is_file()
        assert int(rows[pair_id]["polygons"]) == json.loads((out / pair_id / DONE_MARKER).read_text())["polygons"]


def running_batch(tmp_path: Path, count: int) -> tuple[list[dict[str, str]], Path, Path, subprocess.Popen[str]]:
    """``count`` 384² pairs in a PAIRS file, and a batch over them running until its first pair is done."""
    rows = []
    for index in range(count):
        before, after = make_pair(tmp_path / "data", f"p{index}", 10 * index, size=384)
        rows.append({"id": f"p{index}", "before": str(before), "after": str(after)})
    pairs = write_pairs_csv(tmp_path / "pairs.csv", rows)
    out = tmp_path / "out"
    running = batch(pairs, "--out", out, wait=False)
    assert isinstance(running, subprocess.Popen)
    deadline = time.monotonic() + 300
    while not (out / "p0" / DONE_MARKER).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows, pairs, out, running


def test_a_killed_batch_resumes_where_it_stopped(tmp_path: Path) -> None:
    rows, pairs, out, running = running_batch(tmp_path, 4)
    os.kill(running.pid, signal.SIGKILL)
    running.wait()
    finished = {r["id"] for r in rows if (out / r["id"] / DONE_MARKER).is_file()}
    assert "p0" in finished and len(finished) < 4
    again = batch(pairs, "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"{len(finished)} already done and skipped" in again.stderr
    statuses = {pair_id: row["status"] for pair_id, row in summary(out).items()}
    assert statuses == {r["id"]: "skipped" if r["id"] in finished else "done" for r in rows}
    assert [p.name for p in out.glob("*/.clipcd-*")] == [DONE_MARKER] * 4  # no staging folder left behind
    clean = tmp_path / "clean"
    assert batch(pairs, "--out", clean).returncode == 0
    for row in rows:
        same_outputs(out / row["id"], clean / row["id"])


def test_a_folder_of_pairs_is_matched_by_name(tmp_path: Path) -> None:
    for name, offset in (("north", 0), ("south", 20)):
        before, after = make_pair(tmp_path / "tmp", name, offset)
        (tmp_path / "pairs" / "before").mkdir(parents=True, exist_ok=True)
        (tmp_path / "pairs" / "after").mkdir(parents=True, exist_ok=True)
        before.rename(tmp_path / "pairs" / "before" / f"{name}.tif")
        after.rename(tmp_path / "pairs" / "after" / f"{name}.tif")
    pairs = read_pairs(tmp_path / "pairs")
    assert [(p.id, p.before.parent.name, p.after.parent.name) for p in pairs] == [
        ("north", "before", "after"),
        ("south", "before", "after"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,before\np1,a.tif\n", "line 1: missing columns ['after']"),
        ("id,before,after,colour\np1,a.tif,b.tif,red\n", "unknown columns ['colour']"),
        ("id,before,after\np1,a.tif,b.tif\np2,a.tif,b.tif\np1,c.tif,d.tif\n", "line 4: id 'p1' repeats line 2"),
        ("id,before,after\n../up,a.tif,b.tif\n", "line 2: id '../up' must be a folder name"),
        ("id,before,after\np1,a.tif,\n", "line 2: pair 'p1' needs both"),
    ],
)
def test_a_bad_pairs_file_is_refused_naming_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        read_pairs(path)
    result = batch(path, "--out", tmp_path / "out")
    assert result.returncode == 2 and "line" in result.stderr and not (tmp_path / "out").exists()


def test_sigterm_stops_cleanly_and_the_rerun_continues(tmp_path: Path) -> None:
    rows, pairs, out, running = running_batch(tmp_path, 3)
    running.send_signal(signal.SIGTERM)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 130, stderr
    done = [r["id"] for r in rows if (out / r["id"] / DONE_MARKER).is_file()]
    assert [p.name for p in out.glob("*/.clipcd-*")] == [DONE_MARKER] * len(done)  # the pair in progress cleaned
    assert set(summary(out)) == set(done)
    again = batch(pairs, "--out", out)
    assert again.returncode == 0 and f"{len(done)} already done and skipped" in again.stderr
