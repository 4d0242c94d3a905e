"""Where CLIP weights live on this computer, and fetching, finding, checking and removing them.

One layout everywhere: a folder of weight files and a ``registry.json`` that records, per name,
the file, its open_clip architecture, its sha256 and where it came from. Folders, in the order
they are searched:

1. ``$CLIPCD_CLIP_DIR`` when set: the only folder (tests, shared installs);
2. otherwise, when the plugin runs the engine, ``<QGIS profile>/clipcd/clip`` (it sets
   ``$CLIPCD_QGIS_PROFILE``), where it also writes;
3. the user's cache, ``$XDG_CACHE_HOME/clipcd/clip`` (``~/.cache/clipcd/clip``), where the
   command line writes;
4. every QGIS profile's ``clipcd/clip`` folder, so the command line finds what the plugin fetched.

A file is trusted only while its size and modification time are those recorded when its sha256
was checked; otherwise it is hashed again, and a file that no longer matches is deleted.
Standard library only: the checks that need torch (does a file load?) are in
:mod:`backend.clip.manage`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backend.clip.catalogue import ClipEntry, catalogue
from backend.download import CancelCheck, ProgressCallback, download, partial_path, sha256_of
from backend.errors import InputError, ModelFileError
from backend.model.config import ClipSpec

_log = logging.getLogger(__name__)

DIR_ENV = "CLIPCD_CLIP_DIR"
#: Which present weights label a run by default: remote-sensing CLIPs first, larger first.
PREFERRED = (
    "remoteclip-vit-l-14",
    "remoteclip-vit-b-32",
    "georsclip-vit-b-32",
    "openai-vit-l-14",
    "openai-vit-b-16",
    "openai-vit-b-32",
    "remoteclip-rn50",
    "openai-rn50",
)
PROFILE_ENV = "CLIPCD_QGIS_PROFILE"
REGISTRY_FILE = "registry.json"


@dataclass(frozen=True)
class ClipWeights:
    """CLIP weights present on this computer.

    Attributes:
        name: The catalogue name, or the name given to ``clip add``.
        arch: The open_clip model the file loads into.
        path: The file.
        sha256: Its hash when it was fetched or added.
        source: ``"catalogue"`` (fetched by ``clip get``) or ``"added"`` (``clip add``).
        origin: The URL it came from, or the file it was added from.
        size: Bytes, and ``mtime_ns``: its modification time, both when the hash was checked.
        arch_cfg: The inline open_clip config of a file added with ``--arch CONFIG.json`` (``arch`` is
            then the config file's stem); None for open_clip's own architectures.
    """

    name: str
    arch: str
    path: Path
    sha256: str
    source: str
    origin: str
    size: int
    mtime_ns: int
    arch_cfg: dict[str, Any] | None = None

    @property
    def spec(self) -> ClipSpec:
        """The open_clip model these weights load into."""
        return ClipSpec(model=self.arch, cfg=self.arch_cfg)


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clipcd" / "clip"


def _qgis_profile_folders() -> list[Path]:
    """The ``clipcd/clip`` folders of every QGIS profile of this user (only those that exist)."""
    if sys.platform == "win32":
        roots = [Path(os.environ.get("APPDATA", Path.home())) / "QGIS" / "QGIS3" / "profiles"]
    elif sys.platform == "darwin":
        roots = [Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3" / "profiles"]
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        roots = [Path(data) / "QGIS" / "QGIS3" / "profiles"]
    return sorted(p for root in roots if root.is_dir() for p in root.glob("*/clipcd/clip") if p.is_dir())


def write_dir() -> Path:
    """The folder ``clip get`` and ``clip add`` write into (see the module docstring)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    if os.environ.get(PROFILE_ENV):
        return Path(os.environ[PROFILE_ENV]).expanduser() / "clipcd" / "clip"
    return _user_cache()


def search_dirs() -> list[Path]:
    """The folders searched for CLIP weights, in order (see the module docstring)."""
    if os.environ.get(DIR_ENV):
        return [write_dir()]
    return list(dict.fromkeys([write_dir(), _user_cache(), *_qgis_profile_folders()]))


def _read_registry(folder: Path) -> dict[str, dict[str, object]]:
    path = folder / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["weights"]
        if not isinstance(records, dict):
            raise TypeError("'weights' is not a table")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _log.warning("ignoring %s: it cannot be read (%s); `clip add` or `clip get` rewrites it", path, exc)
        return {}
    return records


def _write_registry(folder: Path, records: dict[str, dict[str, object]]) -> None:
    """Replace ``registry.json`` in ``folder`` whole (a temporary file renamed over it)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": 1, "weights": records}, indent=2, sort_keys=True) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    Path(tmp.name).replace(folder / REGISTRY_FILE)


def _from_record(folder: Path, name: str, record: dict[str, object]) -> ClipWeights | None:
    try:
        return ClipWeights(
            name=name,
            arch=str(record["arch"]),
            path=folder / str(record["file"]),
            sha256=str(record["sha256"]),
            source=str(record["source"]),
            origin=str(record["origin"]),
            size=int(str(record["size"])),
            mtime_ns=int(str(record["mtime_ns"])),
            arch_cfg=_config(record.get("arch_cfg")),
        )
    except (KeyError, ValueError):
        _log.warning("ignoring the record %r in %s: a field is missing", name, folder / REGISTRY_FILE)
        return None


def _config(value: object) -> dict[str, Any] | None:
    """A recorded inline open_clip config (a JSON object), or None."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else None


def installed() -> dict[str, ClipWeights]:
    """The CLIP weights recorded in the searched folders whose files exist (the first folder wins a name)."""
    found: dict[str, ClipWeights] = {}
    for folder in search_dirs():
        for name, record in _read_registry(folder).items():
            weights = _from_record(folder, name, record)
            if weights is not None and name not in found and weights.path.is_file():
                found[name] = weights
    return found


def register(folder: Path, weights: ClipWeights) -> ClipWeights:
    """Record ``weights`` (a file in ``folder``) in that folder's registry, replacing a record of the same name."""
    records = _read_registry(folder)
    record = {k: v for k, v in asdict(weights).items() if k != "name"}
    record["file"] = weights.path.name
    del record["path"]
    records[weights.name] = record
    _write_registry(folder, records)
    return weights


def record_file(
    name: str,
    arch: str,
    path: Path,
    sha256: str,
    source: str,
    origin: str,
    arch_cfg: dict[str, Any] | None = None,
) -> ClipWeights:
    """Register the checked file ``path`` (inside one of the folders) under ``name``."""
    stat = path.stat()
    weights = ClipWeights(name, arch, path, sha256, source, origin, stat.st_size, stat.st_mtime_ns, arch_cfg)
    return register(path.parent, weights)


def verify(weights: ClipWeights) -> ClipWeights:
    """``weights`` when its file still is the one recorded; a changed file is hashed, and deleted if it differs.

    Raises:
        ModelFileError: The file's sha256 no longer matches (it was deleted and its record dropped).
    """
    stat = weights.path.stat()
    if (stat.st_size, stat.st_mtime_ns) == (weights.size, weights.mtime_ns):
        return weights
    actual = sha256_of(weights.path)
    if actual == weights.sha256:
        return record_file(
            weights.name, weights.arch, weights.path, actual, weights.source, weights.origin, weights.arch_cfg
        )
    weights.path.unlink(missing_ok=True)
    _forget(weights.path.parent, weights.name)
    raise ModelFileError(
        f"the CLIP weights {weights.name!r} at {weights.path} were changed on disk (sha256 {actual}, recorded "
        f"{weights.sha256}); the file was deleted. {way_out(weights.name)}"
    )


def _forget(folder: Path, name: str) -> None:
    records = _read_registry(folder)
    if records.pop(name, None) is not None:
        _write_registry(folder, records)


def entry(name: str) -> ClipEntry:
    """The catalogue entry ``name``.

    Raises:
        InputError: No such entry; the message lists the names.
    """
    found = catalogue().get(name)
    if found is None:
        raise InputError(f"{name!r} is not in the CLIP catalogue; known names: {', '.join(catalogue())}")
    return found


def way_out(name: str) -> str:
    """The two ways to get ``name``'s weights onto this computer, as one sentence."""
    listed = catalogue().get(name)
    where = f" (the file is {listed.url}, about {listed.size_mb} MB)" if listed else ""
    return (
        f"On a machine with internet run `python -m backend clip get {name}`; without internet, copy the file here"
        f"{where} and run `python -m backend clip add FILE`."
    )


def missing_error(name: str) -> ModelFileError:
    """The error for CLIP weights that are not on this computer; it names both ways to get them."""
    folders = ", ".join(str(p) for p in search_dirs())
    return ModelFileError(f"the CLIP weights {name!r} are not on this computer (looked in {folders}). {way_out(name)}")


def find(name: str) -> ClipWeights | None:
    """The checked weights called ``name`` on this computer, or None."""
    weights = installed().get(name)
    return verify(weights) if weights is not None else None


def preferred() -> ClipWeights | None:
    """The present weights that label runs by default: the first of :data:`PREFERRED`, else the first added."""
    present = installed()
    for name in (*PREFERRED, *sorted(present)):
        if name in present:
            return find(name)
    return None


def fetch(
    name: str, *, on_progress: ProgressCallback | None = None, is_canceled: CancelCheck | None = None
) -> ClipWeights:
    """The catalogue weights ``name``, downloaded first when absent (resumes a partial file).

    An entry without a published hash gets the hash of what was downloaded pinned and reported.

    Raises:
        InputError: ``name`` is not in the catalogue.
        DownloadError: The download failed (a ChecksumError when the bytes were wrong; nothing kept).
        DownloadCanceled: ``is_canceled`` returned True (the partial file is kept for a resume).
    """
    listed = entry(name)
    present = find(name)
    if present is not None:
        return present
    dest = write_dir() / listed.file_name
    published = listed.url.rsplit("/", 1)[-1]
    hint = f"Without internet access, copy {published} to this computer and run `python -m backend clip add FILE`."
    url = listed.download_url
    _log.info("downloading %s (about %d MB) from %s to %s", name, listed.size_mb, url, dest)
    download(url, dest, listed.sha256, on_progress=on_progress, is_canceled=is_canceled, offline_hint=hint)
    sha = listed.sha256 or sha256_of(dest)
    if listed.sha256 is None:
        _log.warning("%s: the publisher gives no sha256; pinned on first download: %s", name, sha)
    return record_file(name, listed.arch, dest, sha, "catalogue", listed.url)


def remove(name: str) -> list[Path]:
    """Delete the weights called ``name`` (and any partial download) from every searched folder; the files removed."""
    removed = []
    for folder in search_dirs():
        record = _read_registry(folder).get(name)
        if record is not None:
            path = folder / str(record.get("file", ""))
            if path.is_file():
                path.unlink()
                removed.append(path)
            _forget(folder, name)
    listed = catalogue().get(name)
    if listed is not None:
        for folder in search_dirs():
            partial = partial_path(folder / listed.file_name)
            if partial.is_file():
                partial.unlink()
                removed.append(partial)
    return removed
