"""``python -m backend clip …`` as real subprocesses: list, add, get with JSON progress, remove, offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.plugin.release_server import DATA, DATA_SHA, Server, base_url

REMOTECLIP_PATH = "/chendelong/RemoteCLIP/resolve/main/RemoteCLIP-ViT-B-32.pt"


def clip(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m backend clip ARGS`` with this test's environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "backend", "clip", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def listed() -> dict[str, dict[str, object]]:
    result = clip("list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)["weights"]}


def test_list_add_and_remove(tiny_clip: Path, tiny_arch: Path, private_clip_folder: Path) -> None:
    rows = listed()
    assert not rows["openai-vit-b-16"]["present"] and rows["openai-vit-b-16"]["sha256"].startswith("5806e77c")
    assert rows["remoteclip-vit-b-32"]["sha256"] == "pinned on first download"
    text = clip("list")
    assert "openai-vit-l-14" in text.stdout and str(private_clip_folder) in text.stdout
    added = clip("add", tiny_clip, "--arch", tiny_arch, "--name", "tiny-clip")
    assert added.returncode == 0, added.stderr
    assert "added tiny-clip (clipcd-small)" in added.stdout
    row = listed()["tiny-clip"]
    assert row["present"] and row["source"] == "added" and row["arch"] == "clipcd-small"
    doctor = subprocess.run(
        [sys.executable, "-m", "backend", "doctor"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert "clip        tiny-clip (clipcd-small)" in doctor.stdout
    removed = clip("remove", "tiny-clip")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "tiny-clip" not in listed()
    again = clip("remove", "tiny-clip")
    assert again.returncode == 2 and "no CLIP weights called 'tiny-clip'" in again.stderr


def test_get_reports_json_progress_and_the_pinned_hash(server: Server) -> None:
    server.served.files = {REMOTECLIP_PATH: DATA}
    result = clip("get", "remoteclip-vit-b-32", "--json-progress", CLIPCD_CLIP_MIRROR=base_url(server))
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["fraction"] == 1.0
    done = events[-1]
    assert done["event"] == "done" and done["sha256"] == DATA_SHA and done["pinned"] is True
    assert Path(done["path"]).read_bytes() == DATA
    assert listed()["remoteclip-vit-b-32"]["present"]


def test_get_offline_exits_2_and_names_both_ways() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = clip("get", "openai-vit-b-16", CLIPCD_CLIP_MIRROR=f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert "cannot reach" in result.stderr and "clip add FILE" in result.stderr
    unknown = clip("get", "vit-b-99")
    assert unknown.returncode == 2 and "not in the CLIP catalogue" in unknown.stderr


def test_errors_are_json_events_for_the_plugin(tmp_path: Path) -> None:
    gone = clip("remove", "tiny-clip", "--json-progress")
    event = json.loads(gone.stdout.splitlines()[-1])
    assert gone.returncode == 2 and event["event"] == "error" and "tiny-clip" in event["message"]
    missing = clip("add", tmp_path / "nothing.pt", "--arch", "ViT-B-32", "--json-progress")
    event = json.loads(missing.stdout.splitlines()[-1])
    assert missing.returncode == 2 and event["kind"] == "InputError" and "no such file" in event["message"]
