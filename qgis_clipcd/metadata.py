"""Where the plugin's files are, and its metadata.txt: the one place for the version and the URLs.

In a checkout the plugin package ``qgis_clipcd/`` sits beside ``metadata.txt``, ``backend/`` and
``resources/`` at the repository root; the packaged plugin folder holds all four itself. Both
layouts are found from this file's location (symlinks followed or not), so the plugin also works
from a plugin folder that links to the checkout.
"""

from __future__ import annotations

import configparser
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent


def _candidates() -> list[Path]:
    folders = [PACKAGE_DIR, PACKAGE_DIR.parent, PACKAGE_DIR.resolve(), PACKAGE_DIR.resolve().parent]
    return list(dict.fromkeys(folders))


def plugin_root() -> Path:
    """The folder holding metadata.txt: the plugin folder once packaged, the repository root in a checkout."""
    for folder in _candidates():
        if (folder / "metadata.txt").is_file():
            return folder
    return PACKAGE_DIR.parent


def backend_root() -> Path | None:
    """The folder that holds the ``backend`` package (put on the worker's PYTHONPATH), or None."""
    for folder in _candidates():
        if (folder / "backend" / "__init__.py").is_file():
            return folder
    return None


@lru_cache(maxsize=1)
def metadata() -> dict[str, str]:
    """The ``[general]`` section of metadata.txt (empty when the file is missing)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(plugin_root() / "metadata.txt", encoding="utf-8")
    return dict(parser["general"]) if parser.has_section("general") else {}


def resource(relative: str) -> Path:
    """A file under the plugin root, e.g. metadata()["icon"]."""
    return plugin_root() / relative


def icon_path() -> Path:
    """The plugin's SVG icon."""
    return resource(metadata().get("icon", "resources/icons/clipcd.svg"))


def homepage() -> str:
    """The plugin's homepage URL from metadata.txt."""
    return metadata().get("homepage", "")
