"""Fixtures shared by the plugin tests: the Processing provider, a release server, a packaged plugin."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qgis_clipcd.models import store as model_store
from tests.plugin.release_server import REAL_MODEL, Server, running_server, url_of


@pytest.fixture(autouse=True)
def collect_garbage_at_the_end() -> Iterator[None]:
    """Collect each test's cyclic garbage (docks, tasks, layers) when it ends, not inside a later test's QGIS call."""
    yield
    gc.collect()


@pytest.fixture
def provider(qgis_processing: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The ClipCD Processing provider, registered for one test; the engine runs on this interpreter."""
    from qgis.core import QgsApplication

    from qgis_clipcd.processing_provider.provider import ClipCDProvider

    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)  # skips the import check of QGIS's own Python
    registry = QgsApplication.processingRegistry()
    created = ClipCDProvider()
    assert registry.addProvider(created)
    yield created
    registry.removeProvider(created)


@pytest.fixture
def server() -> Iterator[Server]:
    with running_server() as httpd:
        yield httpd


@pytest.fixture
def packaged(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin root without resources/models, a tmp models folder, and the local server as the mirror."""
    root = tmp_path / "plugin"
    (root / "resources" / "icons").mkdir(parents=True)
    monkeypatch.setattr(model_store, "plugin_root", lambda: root)
    monkeypatch.setattr(model_store, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setenv(model_store.URL_ENV, url_of(server, model_store.DEFAULT_MODEL_NAME))
    server.served.data = REAL_MODEL.read_bytes()
    return tmp_path / "models"
