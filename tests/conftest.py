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


@pytest.fixture(scope="session")
def samples() -> Path:
    """The real samples folder (../shared/data or $CLIPCD_SAMPLES); skips the test when absent."""
    folder = _samples()
    if folder is None:
        pytest.skip("real samples not found: set CLIPCD_SAMPLES or place the shared data beside the checkout")
    return folder
