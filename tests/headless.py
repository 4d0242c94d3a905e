"""Loaded with ``-p tests.headless`` (see pyproject.toml) before pytest-qgis starts QGIS.

pytest-qgis creates the QgsApplication before any conftest is imported, so the Qt platform
must be chosen here: offscreen, unless the caller chose one (e.g. xcb under Xvfb).

pytest-qgis 5.0.2 writes the QGIS profile (settings, qgis-auth.db, bookmarks) into
``<rootdir>/.qgis-settings`` and has no option to move it, so its ``_load_qgis_settings`` is
wrapped here to pass a rootdir in a temporary folder instead; the folder is removed at exit.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROFILE_ROOT = Path(tempfile.mkdtemp(prefix="clipcd-qgis-profile-"))
atexit.register(shutil.rmtree, PROFILE_ROOT, ignore_errors=True)


class _TemporaryRoot:
    """The pytest config as pytest-qgis sees it, with ``rootpath`` in a temporary folder."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.rootpath = PROFILE_ROOT

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def _redirect_profile() -> None:
    try:
        from pytest_qgis import plugin
    except ImportError:  # no pytest-qgis: nothing writes a profile
        return
    original = getattr(plugin, "_load_qgis_settings", None)
    if original is None or getattr(original, "clipcd_redirected", False):
        return

    def load_into_temporary_root(config: Any) -> None:
        original(_TemporaryRoot(config))

    load_into_temporary_root.clipcd_redirected = True  # type: ignore[attr-defined]
    plugin._load_qgis_settings = load_into_temporary_root


_redirect_profile()
