"""metadata.txt against the rules plugins.qgis.org applies on upload, and the one-place version and URLs.

The rules come from the repository's validator (qgis/QGIS-Django, qgis-app/plugins/validator.py) and
the cookbook's metadata table: a ``[general]`` section; the required keys; boolean flags that read as
true/false; tracker, repository and homepage URLs with a scheme and a host that are not the template's
placeholders; an author without slashes. Added here: version formats, min <= max QGIS version, the
icon file exists, the texts are filled in with real words. (The validator also fetches the URLs; a
test cannot reach the network, so that check is left to the release.)
"""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO_ROOT

REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker", "repository")
BOOLEANS = ("experimental", "deprecated", "server")
URL_KEYS = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}
VERSION = re.compile(r"^\d+\.\d+(\.\d+)?([-.]?(alpha|beta|rc)\d*)?$")
QGIS_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")
DUMMY = re.compile(
    r"lorem ipsum|put your|your name|your\.?email|example\.com|this plugin does|\btodo\b|\bfixme\b|\bxxx\b",
    re.IGNORECASE,
)
CATEGORIES = {"Raster", "Vector", "Database", "Web", "Mesh", "Plugins"}


def read_metadata(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read(path, encoding="utf-8")
    assert parser.has_section("general"), f"{path} has no [general] section"
    return dict(parser["general"])


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def problems(meta: dict[str, str], plugin_root: Path) -> list[str]:
    """Everything the plugin repository (and this project) would refuse in ``meta``."""
    found = [f"missing required key {key!r}" for key in REQUIRED if not meta.get(key, "").strip()]
    for key in BOOLEANS:
        if key in meta and meta[key].strip().lower() not in ("true", "false", "1", "0"):
            found.append(f"{key}={meta[key]!r} is not true/false")
    for key, placeholder in URL_KEYS.items():
        url = meta.get(key, "").strip()
        parsed = urlparse(url)
        if url == placeholder or parsed.scheme not in ("http", "https") or not parsed.netloc:
            found.append(f"{key}={url!r} is not an http(s) URL")
    if "/" in meta.get("author", ""):
        found.append("author contains a slash")
    if not VERSION.match(meta.get("version", "")):
        found.append(f"version={meta.get('version')!r} is not like 1.2.3")
    low, high = meta.get("qgisMinimumVersion", ""), meta.get("qgisMaximumVersion", "99.99")
    if not QGIS_VERSION.match(low) or not QGIS_VERSION.match(high):
        found.append(f"QGIS versions {low!r}, {high!r} are not like 3.22")
    elif version_tuple(low) > version_tuple(high):
        found.append(f"qgisMinimumVersion {low} is above qgisMaximumVersion {high}")
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", meta.get("email", "")):
        found.append(f"email={meta.get('email')!r} is not an address")
    icon = meta.get("icon", "")
    if not icon or not (plugin_root / icon.removeprefix("./")).is_file():
        found.append(f"icon={icon!r} is not a file under {plugin_root}")
    if meta.get("category", "Plugins") not in CATEGORIES:
        found.append(f"category={meta.get('category')!r} is not one of {sorted(CATEGORIES)}")
    if meta.get("hasProcessingProvider", "no") not in ("yes", "no"):
        found.append("hasProcessingProvider must be yes or no")
    for key in ("name", "description", "about", "changelog", "tags"):
        if DUMMY.search(meta.get(key, "")):
            found.append(f"{key} holds template text: {meta[key]!r}")
    if len(meta.get("about", "").split()) < 10 or len(meta.get("description", "").split()) < 4:
        found.append("description or about is too short to tell a user what the plugin does")
    return found


@pytest.fixture(scope="module")
def meta() -> dict[str, str]:
    return read_metadata(REPO_ROOT / "metadata.txt")


def test_metadata_passes_the_repository_rules(meta: dict[str, str]) -> None:
    assert problems(meta, REPO_ROOT) == []


def test_metadata_says_what_the_project_promises(meta: dict[str, str]) -> None:
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["qgisMaximumVersion"] == "4.99"
    assert meta["category"] == "Raster"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["experimental"] == "True"
    for dependency in ("torch", "open_clip_torch", "rasterio"):
        assert dependency in meta["about"]


def test_the_validator_catches_bad_metadata(meta: dict[str, str], tmp_path: Path) -> None:
    bad = {
        **meta,
        "tracker": "http://bugs",
        "homepage": "ftp://x",
        "version": "one",
        "qgisMinimumVersion": "4.0",
        "qgisMaximumVersion": "3.99",
        "icon": "missing.svg",
        "about": "Put your description here.",
        "experimental": "maybe",
        "author": "a/b",
    }
    del bad["email"]
    found = " | ".join(problems(bad, tmp_path))
    for fragment in (
        "'email'",
        "tracker=",
        "homepage=",
        "version='one'",
        "above qgisMaximumVersion",
        "icon=",
        "template text",
        "experimental=",
        "slash",
    ):
        assert fragment in found


def test_version_is_the_same_everywhere(meta: dict[str, str]) -> None:
    import backend

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" in pyproject["project"]["dynamic"]  # the package's version is backend.__version__
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "backend.__version__"}
    assert meta["version"] == backend.__version__


def test_plugin_reads_its_urls_and_icon_from_metadata(meta: dict[str, str]) -> None:
    from qgis_clipcd import metadata

    assert metadata.plugin_root() == REPO_ROOT
    assert metadata.metadata()["version"] == meta["version"]
    assert metadata.homepage() == meta["homepage"]
    assert metadata.icon_path() == REPO_ROOT / meta["icon"]
    assert metadata.backend_root() == REPO_ROOT
    assert metadata.icon_path().read_text(encoding="utf-8").lstrip().startswith("<svg")
