"""The engine's downloader (``backend/download.py``), loaded from the plugin's backend folder.

One downloader serves the plugin's default model and the engine's ``clip get``. The plugin never
imports the ``backend`` package (inside QGIS it is not on ``sys.path``, and the engine's other
modules need torch), so this module loads that one standard-library file by path, under a private
module name, and re-exports it. :data:`MODEL_OFFLINE_HINT` is what the plugin tells a user without
internet about the model file.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from qgis_clipcd.metadata import backend_root

MODEL_OFFLINE_HINT = (
    "Without internet access, copy the model file to this computer and choose it in the ClipCD dock's "
    "Model field (or the Model file parameter of the Processing algorithm)."
)
_NAME = "qgis_clipcd.models._engine_download"


def _load() -> ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    root = backend_root()
    if root is None:
        raise ImportError("the plugin's backend folder is missing: reinstall the ClipCD plugin")
    spec = importlib.util.spec_from_file_location(_NAME, root / "backend" / "download.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {root / 'backend' / 'download.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from backend.download import (
        CancelCheck,
        ChecksumError,
        DownloadCanceled,
        DownloadError,
        ProgressCallback,
        download,
        partial_path,
        sha256_of,
    )
else:
    _engine = _load()
    CancelCheck = _engine.CancelCheck
    ChecksumError = _engine.ChecksumError
    DownloadCanceled = _engine.DownloadCanceled
    DownloadError = _engine.DownloadError
    ProgressCallback = _engine.ProgressCallback
    download = _engine.download
    partial_path = _engine.partial_path
    sha256_of = _engine.sha256_of

__all__ = [
    "MODEL_OFFLINE_HINT",
    "CancelCheck",
    "ChecksumError",
    "DownloadCanceled",
    "DownloadError",
    "ProgressCallback",
    "download",
    "partial_path",
    "sha256_of",
]
