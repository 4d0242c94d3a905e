"""The catalogue of CLIP checkpoints ClipCD can fetch: ``catalogue.toml`` beside this module, read and checked.

Standard library only, like :mod:`backend.download`, so that anything can read it without torch.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from backend.errors import InputError

CATALOGUE_FILE = Path(__file__).with_name("catalogue.toml")
#: A catalogue file that replaces the shipped one (an organisation's own list, or a test's).
CATALOGUE_ENV = "CLIPCD_CLIP_CATALOGUE"
#: A base URL that replaces every entry's scheme and host, the path kept (a mirror, or a test server).
MIRROR_ENV = "CLIPCD_CLIP_MIRROR"
#: The ``sha256`` of an entry whose publisher gives no hash: ``clip get`` records the one it downloaded.
PINNED = "pinned on first download"
FORMATS = ("openai-jit", "state-dict")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("name", "arch", "url", "format", "size_mb", "licence", "sha256", "note")


@dataclass(frozen=True)
class ClipEntry:
    """One checkpoint of the catalogue (see the header of ``catalogue.toml`` for each field).

    ``sha256`` is None where the publisher gives no hash (:data:`PINNED` in the file).
    """

    name: str
    arch: str
    url: str
    format: str
    size_mb: int
    licence: str
    sha256: str | None
    note: str

    @property
    def file_name(self) -> str:
        """The name the file gets in the cache: the entry's name and the URL's suffix (``openai-rn50.pt``)."""
        return self.name + (PurePosixPath(urlsplit(self.url).path).suffix or ".pt")

    @property
    def download_url(self) -> str:
        """``url``, or the same path on ``$CLIPCD_CLIP_MIRROR`` when that is set."""
        mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
        return mirror + urlsplit(self.url).path if mirror else self.url

    @property
    def sha256_text(self) -> str:
        """The hash as the catalogue states it (the hex digest, or "pinned on first download")."""
        return self.sha256 or PINNED


def parse_entry(table: dict[str, object], where: str) -> ClipEntry:
    """Check one ``[[clip]]`` table and build its entry.

    Raises:
        InputError: A field is missing, unknown or malformed; the message names it and ``where``.
    """
    missing = [f for f in _FIELDS if f not in table]
    unknown = sorted(set(table) - set(_FIELDS))
    if missing or unknown:
        raise InputError(f"{where}: missing fields {missing}, unknown fields {unknown}; expected {list(_FIELDS)}")
    text = {f: table[f] for f in _FIELDS if f != "size_mb"}
    bad = [f for f, v in text.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise InputError(f"{where}: {bad} must be non-empty strings")
    name, url, fmt, sha = str(table["name"]), str(table["url"]), str(table["format"]), str(table["sha256"])
    size = table["size_mb"]
    if not _NAME.match(name):
        raise InputError(f"{where}: name {name!r} must be 2-63 lower-case letters, digits, '.', '_' or '-'")
    if urlsplit(url).scheme != "https" or not urlsplit(url).netloc:
        raise InputError(f"{where}: url {url!r} must be an https:// URL of the publisher's file")
    if fmt not in FORMATS:
        raise InputError(f"{where}: format {fmt!r} must be one of {list(FORMATS)}")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise InputError(f"{where}: size_mb {size!r} must be a positive whole number of MB")
    if sha != PINNED and not _SHA256.match(sha):
        raise InputError(f"{where}: sha256 {sha!r} must be 64 lower-case hex digits or {PINNED!r}")
    return ClipEntry(
        name=name,
        arch=str(table["arch"]),
        url=url,
        format=fmt,
        size_mb=size,
        licence=str(table["licence"]),
        sha256=None if sha == PINNED else sha,
        note=str(table["note"]),
    )


def read_catalogue(path: Path = CATALOGUE_FILE) -> dict[str, ClipEntry]:
    """Every entry of the catalogue file at ``path``, by name, in file order.

    Raises:
        InputError: The file cannot be read, is not TOML, or an entry is malformed or repeated.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the CLIP catalogue {path}: {exc}") from exc
    tables = data.get("clip", [])
    if not isinstance(tables, list) or not tables:
        raise InputError(f"{path}: expected [[clip]] tables")
    entries: dict[str, ClipEntry] = {}
    for number, table in enumerate(tables, 1):
        entry = parse_entry(table, f"{path.name}, entry {number}")
        if entry.name in entries:
            raise InputError(f"{path.name}, entry {number}: the name {entry.name!r} is used twice")
        entries[entry.name] = entry
    return entries


def catalogue() -> dict[str, ClipEntry]:
    """The catalogue: ``$CLIPCD_CLIP_CATALOGUE`` when set, else the shipped file (each file read once)."""
    return _cached(os.environ.get(CATALOGUE_ENV) or str(CATALOGUE_FILE))


@lru_cache(maxsize=4)
def _cached(path: str) -> dict[str, ClipEntry]:
    return read_catalogue(Path(path))


def by_sha256(sha256: str) -> ClipEntry | None:
    """The catalogue entry whose published hash is ``sha256``, if any."""
    return next((e for e in catalogue().values() if e.sha256 == sha256), None)


def for_tag(arch: str, tag: str) -> ClipEntry | None:
    """The entry that provides open_clip's ``arch`` weights tagged ``tag`` (only ``openai`` is mapped).

    ``ViT-B-16`` and ``ViT-B-16-quickgelu`` share OpenAI's file; the activation is not in the weights.
    """
    if tag != "openai":
        return None
    base = arch.removesuffix("-quickgelu")
    return next(
        (e for e in catalogue().values() if e.name.startswith("openai-") and e.arch.removesuffix("-quickgelu") == base),
        None,
    )
