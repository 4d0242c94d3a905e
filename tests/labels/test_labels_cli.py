"""``detect`` with and without CLIP weights, as real subprocesses: refusal, the log line, labels in the outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyogrio

from backend.clip.manage import add
from backend.labels.stage import LABEL_FIELDS
from tests.conftest import REPO_ROOT
from tests.labels.colour_clip import colour_pair


def detect(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend", "detect", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=600,
        check=False,
    )


def test_prompts_without_clip_weights_are_refused_before_any_work(tmp_path: Path) -> None:
    before, after = colour_pair(tmp_path / "pair")
    out = tmp_path / "out"
    result = detect("--before", before, "--after", after, "--out", out, "--prompts", "building")
    assert result.returncode == 2, result.stderr
    assert "need CLIP weights" in result.stderr
    assert "clip get openai-vit-b-16" in result.stderr and "clip add FILE" in result.stderr
    assert not out.exists()
    named = detect("--before", before, "--after", after, "--out", out, "--clip", "remoteclip-vit-b-32")
    assert named.returncode == 2 and "'remoteclip-vit-b-32' are not on this computer" in named.stderr
    assert not out.exists()


def test_without_clip_weights_a_run_works_and_says_labels_need_them(tmp_path: Path) -> None:
    before, after = colour_pair(tmp_path / "pair")
    result = detect("--before", before, "--after", after, "--out", tmp_path / "out", "--json-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    logs = " ".join(e["message"] for e in events if e["event"] == "log")
    assert "labels need CLIP weights" in logs
    done = events[-1]
    assert done["event"] == "done" and done["labels"] is None and done["labelled_with"] is None


def test_present_clip_weights_label_every_run(tiny_clip: Path, tiny_arch: Path, tmp_path: Path) -> None:
    add(tiny_clip, str(tiny_arch), "tiny-clip")
    before, after = colour_pair(tmp_path / "pair")
    out = tmp_path / "out"
    result = detect("--before", before, "--after", after, "--out", out, "--json-progress", "--threshold", "0.01")
    assert result.returncode == 0, result.stdout + result.stderr
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["labelled_with"] == "tiny-clip" and isinstance(done["labels"], dict)
    assert sum(done["labels"].values()) == done["polygons"] > 0
    info = pyogrio.read_info(out / "changes.gpkg")
    assert list(info["fields"])[-5:] == list(LABEL_FIELDS)
    skipped = detect("--before", before, "--after", after, "--out", tmp_path / "plain", "--no-labels")
    assert skipped.returncode == 0 and "label" not in pyogrio.read_info(tmp_path / "plain" / "changes.gpkg")["fields"]
