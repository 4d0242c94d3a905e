"""Install the plugin zip into a QGIS profile: ``python -m tools.deploy_plugin [--profile-dir DIR] [--zip FILE]``.

The profile defaults to ``$QGIS_PROFILE_DIR``, else ``~/.local/share/QGIS/QGIS3/profiles/default``.
The zip is validated, extracted into a temporary folder beside ``python/plugins/qgis_clipcd`` and
swapped in for any older install (a symlink to a checkout is replaced, its target left alone);
then ``qgis_clipcd=true`` is set under ``[PythonPlugins]`` in ``QGIS/QGIS3.ini`` so QGIS loads it
at the next start. Restart QGIS (or use Plugin Reloader) to pick up a new version. Exit codes:
0 installed, 1 an invalid zip or a failed install, 2 a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tools.package_plugin import PLUGIN_DIR, ROOT, PackageError, read_version, validate, zip_name

_log = logging.getLogger("tools.deploy_plugin")

SECTION = "[PythonPlugins]"


def default_profile_dir() -> Path:
    """``$QGIS_PROFILE_DIR`` when set, else the default QGIS 3 profile of this user."""
    configured = os.environ.get("QGIS_PROFILE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def install(zip_path: Path, profile_dir: Path) -> Path:
    """Extract the validated plugin zip into the profile's plugin folder; return the plugin folder.

    The new files are extracted next to the target and renamed into place, so QGIS never sees a
    half-extracted plugin; an old install is moved aside first and restored if the swap fails.
    """
    validate(zip_path)  # one top folder, safe entry names, no binaries
    with zipfile.ZipFile(zip_path) as zf:
        top = zf.namelist()[0].split("/", 1)[0]
        plugins = profile_dir / "python" / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        target = plugins / top
        staging = Path(tempfile.mkdtemp(prefix=f".{top}-", dir=plugins))
        try:
            zf.extractall(staging)
            old = staging / "previous"
            had_old = target.exists() or target.is_symlink()
            if had_old:
                target.rename(old)
            try:
                (staging / top).rename(target)
            except OSError:
                if had_old:
                    old.rename(target)
                raise
        finally:
            _remove(staging)  # the old install (or a symlink to a checkout, not its target)
    return target


def enable_plugin(ini_path: Path, plugin: str = PLUGIN_DIR) -> None:
    """Set ``<plugin>=true`` under ``[PythonPlugins]`` in a Qt INI file, keeping everything else.

    Edits line by line (Qt's INI escapes are not what configparser expects), writes a temporary
    file and renames it over the old one.
    """
    text = ini_path.read_text(encoding="utf-8", errors="surrogateescape") if ini_path.is_file() else ""
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    entry = f"{plugin}=true"
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [SECTION, entry]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        keys = [i for i in range(start + 1, end) if lines[i].split("=", 1)[0].strip() == plugin]
        if keys:
            lines[keys[0]] = entry
            for extra in reversed(keys[1:]):
                del lines[extra]
        else:
            last = max((i for i in range(start, end) if lines[i].strip()), default=start)
            lines.insert(last + 1, entry)
    ini_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{ini_path.name}.", suffix=".partial", dir=ini_path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape", newline="") as stream:
            stream.write(newline.join(lines) + newline)
        if ini_path.exists():
            shutil.copymode(ini_path, temp)
        else:
            temp.chmod(0o644)
        temp.replace(ini_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.deploy_plugin", description="Install the plugin zip.")
    parser.add_argument("--profile-dir", type=Path, help="QGIS profile folder (default: $QGIS_PROFILE_DIR or default)")
    parser.add_argument("--zip", type=Path, help="plugin zip (default: dist/qgis_clipcd-<version>.zip)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        zip_path = args.zip or ROOT / "dist" / zip_name(read_version())
        if not zip_path.is_file():
            _log.error("no plugin zip at %s: run `make package` first or pass --zip", zip_path)
            return 2
        profile = args.profile_dir or default_profile_dir()
        target = install(zip_path, profile)
        ini_path = profile / "QGIS" / "QGIS3.ini"
        enable_plugin(ini_path, target.name)
    except PackageError as exc:
        _log.error("%s", exc)
        return 1
    except OSError as exc:
        _log.error("could not install the plugin: %s", exc)
        return 1
    _log.info("installed %s into %s and enabled it in %s; restart QGIS to load it", zip_path.name, target, ini_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
