"""Build and check the QGIS plugin zip: ``python -m tools.package_plugin [--out DIR] [--check [ZIP]]``.

The zip ``dist/qgis_clipcd-<version>.zip`` holds one top folder ``qgis_clipcd/`` with the plugin
modules, ``metadata.txt``, ``LICENSE``, the pure-Python ``backend/`` and ``resources/icons/``; never
model weights, caches or binaries (plugins.qgis.org's rules: the default model is downloaded on first
use). ``--offline`` builds ``qgis_clipcd-<version>-offline.zip``, the same plus every shipped model
file (``resources/models/*.safetensors``, fp16) for machines without internet, under 20 MB.
Files come from the working tree in sorted order with fixed timestamps, so building twice gives
byte-identical zips. Every build is checked against the
plugins.qgis.org rules before it is moved into place. Exit codes: 0 ok, 1 the zip (or the tree
it is built from) breaks a rule, 2 a usage error.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_log = logging.getLogger("tools.package_plugin")

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = "qgis_clipcd"
MAX_BYTES = 25_000_000  # plugins.qgis.org's upload limit
OFFLINE_MAX_BYTES = 20_000_000  # the offline zip, models included
MODEL_FOLDER = "resources/models"
TOP_FOLDER = re.compile(r"^[A-Za-z][A-Za-z0-9_-]+$")
REQUIRED_FILES = ("__init__.py", "metadata.txt", "LICENSE")
REQUIRED_KEYS = (
    "name",
    "description",
    "version",
    "qgisMinimumVersion",
    "author",
    "email",
    "about",
    "tracker",
    "repository",
)
TEXT_SUFFIXES = frozenset({".py", ".txt", ".svg", ".json", ".md", ".typed", ".yaml", ".yml", ".cfg", ".toml"})
TEXT_NAMES = frozenset({"LICENSE"})
FORBIDDEN_PARTS = frozenset({"__pycache__", ".git", "__MACOSX"})
# Files picked up from the code folders: sources and the small text data files they read.
PACKAGE_SUFFIXES = frozenset({".py", ".typed", ".txt", ".json", ".yaml", ".yml", ".md", ".toml"})
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build-time leaks in
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")


class PackageError(Exception):
    """The plugin tree or zip breaks a packaging rule; the message names the file or entry."""


@dataclass(frozen=True)
class Summary:
    """What a valid zip holds."""

    path: Path
    files: int
    size: int

    def line(self) -> str:
        """One human line: where, how many files, how big."""
        limit = OFFLINE_MAX_BYTES if self.path.name.endswith("-offline.zip") else MAX_BYTES
        return f"{self.path}: {self.files} files, {self.size / 1e6:.2f} MB (limit {limit / 1e6:.0f} MB)"


def _parse_metadata(text: str, where: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        raise PackageError(f"{where} is not a valid INI file: {exc}") from exc
    if not parser.has_section("general"):
        raise PackageError(f"{where} has no [general] section")
    return dict(parser["general"])


def read_version(root: Path = ROOT) -> str:
    """The plugin version from ``metadata.txt`` ``[general] version`` under ``root``."""
    path = root / "metadata.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackageError(f"cannot read {path}: {exc.strerror}") from exc
    version = _parse_metadata(text, str(path)).get("version", "").strip()
    if not VERSION.match(version):
        raise PackageError(f"{path}: [general] version {version!r} is missing or not a plain version such as 0.1.0")
    return version


def zip_name(version: str, offline: bool = False) -> str:
    """The zip's file name for a version, e.g. ``qgis_clipcd-0.1.0.zip`` (``-offline.zip`` with the models)."""
    return f"{PLUGIN_DIR}-{version}{'-offline' if offline else ''}.zip"


def _wanted(relative: PurePosixPath) -> bool:
    hidden = any(part.startswith(".") or part in FORBIDDEN_PARTS for part in relative.parts)
    return not hidden and relative.suffix in PACKAGE_SUFFIXES


def _tree(root: Path, folder: str) -> Iterable[PurePosixPath]:
    for path in (root / folder).rglob("*"):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and _wanted(relative):
            yield relative


def plugin_files(root: Path = ROOT, offline: bool = False) -> list[tuple[str, Path]]:
    """The zip's entries as sorted ``(name in the zip, file in the tree)`` pairs."""
    entries: dict[str, Path] = {}
    for name in ("metadata.txt", "LICENSE"):
        if not (root / name).is_file():
            raise PackageError(f"{root / name} is missing: the plugin zip must contain it")
        entries[f"{PLUGIN_DIR}/{name}"] = root / name
    for relative in _tree(root, PLUGIN_DIR):
        # the plugin package's own files sit at the top of the plugin folder
        entries[str(PurePosixPath(PLUGIN_DIR, *relative.parts[1:]))] = root / relative
    for relative in _tree(root, "backend"):
        entries[f"{PLUGIN_DIR}/{relative}"] = root / relative
    for path in (root / "resources" / "icons").glob("*.svg"):
        entries[f"{PLUGIN_DIR}/resources/icons/{path.name}"] = path
    if offline:
        for path in (root / MODEL_FOLDER).glob("*.safetensors"):
            entries[f"{PLUGIN_DIR}/{MODEL_FOLDER}/{path.name}"] = path
    return sorted(entries.items())


def _entry_problems(zf: zipfile.ZipFile, info: zipfile.ZipInfo, offline: bool = False) -> list[str]:
    name = info.filename
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or ":" in name:
        return [f"entry {name!r}: unsafe path (absolute, backslash, drive or '..')"]
    problems = []
    if len(parts) < 2 and not info.is_dir():
        problems.append(f"entry {name!r} lies outside the plugin's top folder")
    if FORBIDDEN_PARTS.intersection(parts) or name.endswith(".pyc"):
        problems.append(f"entry {name!r}: caches, .pyc, .git and __MACOSX must not be packaged")
    if info.is_dir():
        return problems
    if info.flag_bits & 0x1:
        return [*problems, f"entry {name!r} is encrypted"]
    suffix = PurePosixPath(name).suffix
    if offline and suffix == ".safetensors" and PurePosixPath(*parts[1:-1]) == PurePosixPath(MODEL_FOLDER):
        return problems  # the offline zip's model files: binary by nature
    if suffix not in TEXT_SUFFIXES and PurePosixPath(name).name not in TEXT_NAMES:
        problems.append(f"entry {name!r}: {suffix or 'no extension'} is not an allowed text file type (no binaries)")
    elif b"\x00" in zf.read(info):
        problems.append(f"entry {name!r} holds NUL bytes: a binary file, which plugins.qgis.org refuses")
    return problems


def _metadata_problems(zf: zipfile.ZipFile, entry: str) -> list[str]:
    try:
        found = _parse_metadata(zf.read(entry).decode("utf-8"), entry)
    except (PackageError, UnicodeDecodeError) as exc:
        return [f"entry {entry!r}: {exc}"]
    missing = [key for key in REQUIRED_KEYS if not found.get(key, "").strip()]
    return [f"entry {entry!r} lacks required keys: {', '.join(missing)}"] if missing else []


def validate(path: Path, offline: bool = False) -> Summary:
    """Check a plugin zip against the plugins.qgis.org rules (``offline``: model files allowed, 20 MB).

    Raises:
        PackageError: naming every offending entry.
    """
    size = path.stat().st_size
    limit = OFFLINE_MAX_BYTES if offline else MAX_BYTES
    if size > limit:
        raise PackageError(f"{path} is {size / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit")
    if not zipfile.is_zipfile(path):
        raise PackageError(f"{path} is not a zip file")
    with zipfile.ZipFile(path) as zf:
        bad_crc = zf.testzip()
        if bad_crc is not None:
            raise PackageError(f"{path}: entry {bad_crc!r} is corrupt (CRC mismatch)")
        infos = zf.infolist()
        problems = [problem for info in infos for problem in _entry_problems(zf, info, offline)]
        tops = sorted({PurePosixPath(info.filename).parts[0] for info in infos if info.filename.strip("/")})
        if len(tops) != 1:
            problems.append(f"{path} must hold exactly one top folder, found {len(tops)}: {', '.join(tops) or 'none'}")
        else:
            top = tops[0]
            if not TOP_FOLDER.match(top):
                problems.append(f"top folder {top!r} does not match {TOP_FOLDER.pattern}")
            names = set(zf.namelist())
            problems += [f"{path} lacks {top}/{file}" for file in REQUIRED_FILES if f"{top}/{file}" not in names]
            if f"{top}/metadata.txt" in names:
                problems += _metadata_problems(zf, f"{top}/metadata.txt")
        files = sum(1 for info in infos if not info.is_dir())
    if problems:
        raise PackageError(f"{path} is not a valid QGIS plugin zip:\n  " + "\n  ".join(problems))
    return Summary(path, files, size)


def build(out_dir: Path, root: Path = ROOT, offline: bool = False) -> Summary:
    """Build ``out_dir/qgis_clipcd-<version>.zip`` from the tree at ``root`` and validate it.

    The zip is written to a temporary file beside the target and renamed only once it is valid,
    so a failed build leaves no zip (and an older valid one in place).
    """
    target = out_dir / zip_name(read_version(root), offline)
    entries = plugin_files(root, offline)
    out_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=out_dir)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream, zipfile.ZipFile(stream, "w") as zf:
            for name, source in entries:
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so the permission bits below are read back
                info.external_attr = 0o100644 << 16
                zf.writestr(info, source.read_bytes(), compresslevel=9)
        summary = validate(temp, offline)
        temp.chmod(0o644)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Summary(target, summary.files, summary.size)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.package_plugin", description="Build or check the QGIS plugin zip."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    parser.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="ZIP",
        help="only validate ZIP (default: the current version's zip in --out)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="the offline zip: the shipped model files included (under 20 MB)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check is None:
            _log.info("built %s", build(args.out, offline=args.offline).line())
            return 0
        path = Path(args.check) if args.check else args.out / zip_name(read_version(), args.offline)
        if not path.is_file():
            _log.error("no zip to check at %s: build it with `make package` or pass its path", path)
            return 2
        _log.info("valid %s", validate(path, args.offline).line())
        return 0
    except PackageError as exc:
        _log.error("%s", exc)
        return 1
    except OSError as exc:
        _log.error("cannot build or read the plugin zip: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
