"""Fixtures of the CLIP weights tests: a release server in the publishers' URL layout, a tiny CLIP file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from backend.model.config import get_config
from backend.model.weights import build_clip
from tests.plugin.release_server import Server, running_server


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server() as httpd:
        yield httpd


@pytest.fixture
def tiny_arch(tmp_path: Path) -> Path:
    """The open_clip config of changeclip-small's CLIP towers, as a JSON file (``--arch FILE``)."""
    spec = get_config("changeclip-small").clip
    assert spec is not None and spec.cfg is not None
    path = tmp_path / "clipcd-small.json"
    path.write_text(json.dumps(spec.cfg), encoding="utf-8")
    return path


@pytest.fixture
def tiny_clip(tmp_path: Path) -> Path:
    """A CLIP-shaped checkpoint: changeclip-small's CLIP with seeded random weights, saved as a state dict."""
    spec = get_config("changeclip-small").clip
    assert spec is not None
    torch.manual_seed(7)
    clip = build_clip(spec)
    path = tmp_path / "tiny-clip.pt"
    torch.save(clip.state_dict(), path)
    return path
