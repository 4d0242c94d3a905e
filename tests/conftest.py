"""Shared test set-up: QGIS's Processing plugins on sys.path, and the real-samples folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if "/usr/share/qgis/python/plugins" not in sys.path:
    sys.path.append("/usr/share/qgis/python/plugins")

REPO_ROOT = Path(__file__).resolve().parent.parent


def _samples() -> Path | None:
    configured = os.environ.get("CLIPCD_SAMPLES")
    folder = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return folder if folder.is_dir() else None


SAMPLES = _samples()  # None when the real samples are absent


@pytest.fixture(autouse=True)
def private_clip_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty CLIP weights folder: the user's cache is never read or written."""
    folder = tmp_path_factory.mktemp("clip")
    monkeypatch.setenv("CLIPCD_CLIP_DIR", str(folder))
    for name in ("CLIPCD_CLIP_MIRROR", "CLIPCD_CLIP_CATALOGUE", "CLIPCD_QGIS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture(scope="session")
def samples() -> Path:
    """The real samples folder (../shared/data or $CLIPCD_SAMPLES); skips the test when absent."""
    folder = _samples()
    if folder is None:
        pytest.skip("real samples not found: set CLIPCD_SAMPLES or place the shared data beside the checkout")
    return folder
