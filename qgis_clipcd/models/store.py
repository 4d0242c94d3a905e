"""Where the default model comes from: the checkout's ``resources/models``, else a verified download.

This module is the one place for the release constants (file name, URL, sha256, size). The
packaged plugin ships no weights: the default model is downloaded once, on first use, into the
QGIS profile (``<profile>/clipcd/models/``), and used only when its sha256 matches. A user without
internet access chooses a local model file instead. ``$CLIPCD_MODEL_URL`` replaces the URL (a
mirror, or a local server in tests); the bytes must still match :data:`DEFAULT_MODEL_SHA256`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from qgis_clipcd.metadata import metadata, plugin_root
from qgis_clipcd.models.download import (
    MODEL_OFFLINE_HINT,
    CancelCheck,
    DownloadCanceled,
    ProgressCallback,
    download,
    sha256_of,
)

_log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "clipcd-default.safetensors"
#: The default model in a checkout, relative to the plugin root (left out of the packaged zip).
CHECKOUT_MODEL = f"resources/models/{DEFAULT_MODEL_NAME}"
#: The release asset: ``<repository>/releases/download/v<version>/<name>`` from metadata.txt.
DEFAULT_MODEL_URL = (
    f"{metadata().get('repository', '').rstrip('/')}/releases/download/v{metadata().get('version', '')}/"
    f"{DEFAULT_MODEL_NAME}"
)
DEFAULT_MODEL_SHA256 = "0ae41de3cee68d52a29b519cf054d61312f41fe1a3d3c539bc1b7f8834e5e657"  # pragma: allowlist secret
DEFAULT_MODEL_SIZE = 6_615_140
#: Environment variable that replaces :data:`DEFAULT_MODEL_URL` (mirrors, tests).
URL_ENV = "CLIPCD_MODEL_URL"

_verified: dict[tuple[str, int, int], bool] = {}
_fetch_lock = threading.Lock()


def model_url() -> str:
    """The URL the default model is downloaded from (``$CLIPCD_MODEL_URL`` or the release asset)."""
    return os.environ.get(URL_ENV, "").strip() or DEFAULT_MODEL_URL


def models_dir() -> Path:
    """The folder for downloaded models: ``<QGIS profile>/clipcd/models`` (``~/.clipcd/models`` outside QGIS)."""
    try:
        from qgis.core import QgsApplication
    except ImportError:
        return Path.home() / ".clipcd" / "models"
    profile = QgsApplication.qgisSettingsDirPath()
    if not profile:
        return Path.home() / ".clipcd" / "models"
    return Path(profile) / "clipcd" / "models"


def download_path() -> Path:
    """Where the downloaded default model lives (whether or not it is there yet)."""
    return models_dir() / DEFAULT_MODEL_NAME


def shipped_dir() -> Path:
    """The folder of the model files that travel with the plugin (a checkout's, or the offline zip's)."""
    return plugin_root() / "resources" / "models"


def checkout_model() -> Path | None:
    """The default model under the plugin root (a checkout), when present."""
    path = plugin_root() / CHECKOUT_MODEL
    return path if path.is_file() else None


def is_verified(path: Path) -> bool:
    """Whether ``path`` is the default model byte for byte (size, then sha256; cached per path, mtime, size)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != DEFAULT_MODEL_SIZE:
        return False
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _verified:
        try:
            _verified[key] = sha256_of(path) == DEFAULT_MODEL_SHA256
        except OSError:
            return False
        if not _verified[key]:
            _log.warning("%s is not the default model (sha256 differs); it will be downloaded again", path)
    return _verified[key]


def downloaded_model() -> Path | None:
    """The downloaded default model, when present and verified (a damaged file is never used)."""
    path = download_path()
    return path if is_verified(path) else None


def default_model_path() -> Path | None:
    """The default model on this computer: the checkout's, else the verified download, else None."""
    return checkout_model() or downloaded_model()


def model_for_run(chosen: str | None) -> tuple[str, bool]:
    """The ``--model`` path for a run, and whether the default model must be downloaded first.

    Args:
        chosen: The model file the user picked; None or empty for the default model.

    Returns:
        (path, needs_download): ``chosen``, else the default model's path on this computer, else
        :func:`download_path` with ``needs_download`` True (the file appears there once
        :func:`fetch_default_model` has run).
    """
    if chosen:
        return chosen, False
    found = default_model_path()
    if found is not None:
        return str(found), False
    return str(download_path()), True


def fetch_default_model(on_progress: ProgressCallback | None = None, is_canceled: CancelCheck | None = None) -> Path:
    """The verified downloaded default model, downloading it first when needed (resumes a partial file).

    One download at a time per process: a second caller waits, then finds the file.

    Raises:
        DownloadCanceled: ``is_canceled`` returned True (the partial file is kept).
        DownloadError: the download failed; ChecksumError when the bytes were wrong.
    """
    canceled = is_canceled or (lambda: False)
    while not _fetch_lock.acquire(timeout=0.2):
        if canceled():
            raise DownloadCanceled("download of the default model canceled while another download ran")
    try:
        found = downloaded_model()
        if found is not None:
            return found
        target = download_path()
        _log.info("downloading the default model from %s to %s", model_url(), target)
        download(
            model_url(),
            target,
            DEFAULT_MODEL_SHA256,
            on_progress=on_progress,
            is_canceled=is_canceled,
            offline_hint=MODEL_OFFLINE_HINT,
        )
        stat = target.stat()
        _verified[(str(target), stat.st_mtime_ns, stat.st_size)] = True
        return target
    finally:
        _fetch_lock.release()
