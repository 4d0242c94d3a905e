"""Download one file over HTTP(S) with resume, retries, progress, cancel and a sha256 check.

Plain Python (urllib only, no torch, no QGIS), so it runs in the engine (``clip get``), in a QgsTask
thread, a Processing algorithm or a test; the plugin loads this very file (see
``qgis_clipcd/models/download.py``).
The bytes go to ``<dest>.partial`` first; only a file whose sha256 matches is renamed to ``dest``.
A partial file left by a dropped connection or a cancel is resumed next time with a ``Range``
request, and is never used as a model.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
CancelCheck = Callable[[], bool]

#: What a user without internet access can do instead (appended to every download error unless the
#: caller names its own way, as the plugin does for the model file and ``clip get`` for CLIP weights).
OFFLINE_HINT = "Without internet access, copy the file to this computer by other means."

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
#: What a broken connection raises while the body is read (socket errors are OSErrors).
_DROPPED = (http.client.HTTPException, OSError)


class DownloadError(RuntimeError):
    """The file could not be downloaded; the message names the URL and what to do.

    Attributes:
        url: The URL that failed.
        status: The HTTP status, when the server answered with an error.
    """

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(DownloadError):
    """The downloaded bytes are not the expected file; nothing was kept."""

    def __init__(self, url: str, expected: str, actual: str, offline_hint: str = OFFLINE_HINT) -> None:
        super().__init__(
            f"the file downloaded from {url} is not the expected one: its sha256 is {actual}, expected "
            f"{expected}. It was deleted. Retry later (the server or a proxy may have sent a damaged or "
            f"different file). {offline_hint}",
            url,
        )
        self.expected = expected
        self.actual = actual


class DownloadCanceled(Exception):
    """The caller canceled; the partial file is kept so that a later download resumes."""


class _Dropped(Exception):
    """The connection broke mid-body; retry from what is on disk."""


class _Restart(Exception):
    """The partial file cannot be resumed; it was deleted, start over."""


def partial_path(dest: str | Path) -> Path:
    """Where the bytes of ``dest`` collect until they are verified."""
    dest = Path(dest)
    return dest.with_suffix(dest.suffix + ".partial")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | Path,
    sha256: str | None,
    *,
    on_progress: ProgressCallback | None = None,
    is_canceled: CancelCheck | None = None,
    timeout: float = 30.0,
    chunk: int = 1 << 16,
    retries: int = 4,
    offline_hint: str = OFFLINE_HINT,
) -> Path:
    """Download ``url`` to ``dest`` and check its sha256; resume a partial file left earlier.

    Args:
        url: An http:// or https:// URL.
        dest: The final file; it appears only once the bytes match ``sha256``.
        sha256: The expected hex digest of the whole file; None for a file whose publisher gives no
            hash (the caller pins :func:`sha256_of` the result).
        on_progress: Called with (bytes on disk, total bytes or None) after each block.
        is_canceled: Polled between blocks; True stops the download.
        timeout: Seconds to wait for the server on connect and on each read.
        chunk: Bytes per read.
        retries: How many times a dropped connection is resumed before giving up.
        offline_hint: What a user without internet can do instead; ends every error message.

    Returns:
        ``dest``.

    Raises:
        DownloadCanceled: ``is_canceled`` returned True; the partial file is kept for a resume.
        ChecksumError: the bytes do not match ``sha256``; the partial file was deleted.
        DownloadError: a bad URL, an HTTP error, no connection, or too many dropped connections.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {url!r}: only http:// and https:// URLs are supported.", url)
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the folder {dest.parent}: {exc.strerror or exc}.", url) from None
    partial = partial_path(dest)
    expected = sha256.strip().lower() if sha256 else None
    canceled = is_canceled or (lambda: False)
    failures = 0
    while True:
        if canceled():
            raise DownloadCanceled(f"download of {url} canceled; {partial} is kept to resume later")
        try:
            _fetch(url, partial, expected, on_progress, canceled, timeout, chunk, offline_hint)
            break
        except _Restart:
            failures += 1
            reason = "the partial file could not be resumed"
        except _Dropped as exc:
            failures += 1
            reason = str(exc)
        if failures > retries:
            kept = f"{partial} is kept, so the next try resumes. " if partial.is_file() else ""
            raise DownloadError(
                f"downloading {url} failed {failures} times ({reason}); {kept}Check the connection and retry. "
                f"{offline_hint}",
                url,
            )
        _log.warning("download of %s interrupted (%s); resuming (try %d of %d)", url, reason, failures, retries)
        time.sleep(min(2.0, 0.2 * failures))
    if expected is not None:
        actual = sha256_of(partial)
        if actual != expected:
            partial.unlink(missing_ok=True)
            raise ChecksumError(url, expected, actual, offline_hint)
    partial.replace(dest)  # atomic on one file system
    return dest


def _fetch(
    url: str,
    partial: Path,
    expected: str | None,
    on_progress: ProgressCallback | None,
    canceled: CancelCheck,
    timeout: float,
    chunk: int,
    hint: str,
) -> None:
    """One request: append the rest of the body to ``partial`` (or rewrite it when the server ignores Range)."""
    offset = partial.stat().st_size if partial.is_file() else 0
    headers = {"User-Agent": "qgis-clipcd", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked in download()
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # nosec B310 # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the partial file is already whole, or longer than the file
            if expected is not None and sha256_of(partial) == expected:
                return
            partial.unlink(missing_ok=True)
            raise _Restart from None
        raise DownloadError(
            f"downloading {url} failed: the server answered HTTP {exc.code} {exc.reason}. Check the URL "
            f"and retry. {hint}",
            url,
            exc.code,
        ) from None
    except urllib.error.URLError as exc:  # no DNS, connection refused, TLS failure, connect timeout
        raise DownloadError(f"cannot reach {url}: {exc.reason}. Check the connection. {hint}", url) from None
    except (http.client.HTTPException, ConnectionError) as exc:  # closed before the status line: retry
        raise _Dropped(f"{type(exc).__name__}: {exc}") from None
    except OSError as exc:  # e.g. no status line within the timeout
        raise DownloadError(f"cannot download {url}: {exc}. Check the connection. {hint}", url) from None
    with response:
        status = int(response.status)
        if status not in (200, 206):
            raise DownloadError(f"downloading {url} failed: unexpected HTTP {status}. {hint}", url, status)
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                partial.unlink(missing_ok=True)
                raise _Restart
        else:  # 200: the whole file (first request, or a server that ignores Range)
            if offset:
                _log.info("%s ignored the Range request; downloading from the start", url)
            offset = 0
        total = offset + remaining if remaining is not None else None
        try:
            done = _copy(response, partial, offset, total, url, on_progress, canceled, chunk)
        except OSError as exc:  # writing failed: the disk, not the network
            raise DownloadError(
                f"cannot write {partial}: {exc.strerror or exc}; free some space or check the folder's permissions.",
                url,
            ) from None
        if total is not None and done < total:
            raise _Dropped(f"connection closed after {done} of {total} bytes")


def _copy(
    response: http.client.HTTPResponse,
    partial: Path,
    offset: int,
    total: int | None,
    url: str,
    on_progress: ProgressCallback | None,
    canceled: CancelCheck,
    chunk: int,
) -> int:
    """Write the body to ``partial`` (appended after ``offset`` bytes); the bytes on disk at the end."""
    done = offset
    with partial.open("ab" if offset else "wb") as out:
        if on_progress is not None:
            on_progress(done, total)
        while True:
            if canceled():
                raise DownloadCanceled(f"download of {url} canceled; {partial} is kept to resume later")
            try:
                block = response.read(chunk)
            except _DROPPED as exc:
                raise _Dropped(f"{type(exc).__name__}: {exc}") from None
            if not block:
                return done
            out.write(block)
            done += len(block)
            if on_progress is not None:
                on_progress(done, total)
