"""The default model's download against a real local HTTP server: resume, retries, cancel, checksum; the model store.

The server (tests/plugin/release_server.py) serves bytes from memory with Range support and can be
told to drop the connection after N bytes on the first request, to ignore Range, to answer 404, or
to send slowly.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from qgis_clipcd.models import store as model_store
from qgis_clipcd.models.download import (
    MODEL_OFFLINE_HINT,
    ChecksumError,
    DownloadCanceled,
    DownloadError,
    download,
    partial_path,
)
from tests.plugin.release_server import DATA, DATA_SHA, REAL_MODEL, Server, url_of

# -- download() ---------------------------------------------------------------------------------


def test_full_download_is_verified_and_leaves_no_partial(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m.safetensors"
    seen: list[tuple[int, int | None]] = []
    assert download(url_of(server), dest, DATA_SHA, on_progress=lambda d, t: seen.append((d, t))) == dest
    assert dest.read_bytes() == DATA
    assert not partial_path(dest).exists()
    assert server.served.ranges == [None]
    assert seen[0] == (0, len(DATA)) and seen[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("how", ["close", "reset", "stall"])
def test_a_dropped_connection_is_resumed_with_a_range_request(server: Server, tmp_path: Path, how: str) -> None:
    server.served.drop_after, server.served.drop_how = 100_000, how
    dest = tmp_path / "m.safetensors"
    download(url_of(server), dest, DATA_SHA, timeout=0.5)
    assert dest.read_bytes() == DATA
    assert not partial_path(dest).exists()
    assert server.served.ranges[0] is None
    resumed = [r for r in server.served.ranges[1:] if r is not None]
    assert resumed and int(resumed[-1].removeprefix("bytes=").rstrip("-")) > 0


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "m.safetensors"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as caught:
        download(url_of(server), dest, wrong, offline_hint=MODEL_OFFLINE_HINT)
    message = str(caught.value)
    assert url_of(server) in message and wrong in message and DATA_SHA in message
    assert message.endswith(MODEL_OFFLINE_HINT) and "Retry" in message
    assert not dest.exists() and not partial_path(dest).exists()


def test_cancel_keeps_the_partial_and_a_second_call_resumes(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "m.safetensors"
    progress: list[int] = []
    with pytest.raises(DownloadCanceled):
        download(
            url_of(server),
            dest,
            DATA_SHA,
            chunk=4096,
            on_progress=lambda done, total: progress.append(done),
            is_canceled=lambda: bool(progress) and progress[-1] >= 64 * 1024,
        )
    kept = partial_path(dest)
    assert not dest.exists()
    assert kept.is_file() and 64 * 1024 <= kept.stat().st_size < len(DATA)
    assert DATA.startswith(kept.read_bytes())

    download(url_of(server), dest, DATA_SHA)
    assert dest.read_bytes() == DATA and not kept.exists()
    assert server.served.ranges[-1] == f"bytes={64 * 1024}-"


def test_http_errors_name_the_url_and_the_way_out(server: Server, tmp_path: Path) -> None:
    server.served.status = 404
    url = url_of(server, "missing.safetensors")
    with pytest.raises(DownloadError) as caught:
        download(url, tmp_path / "m.safetensors", DATA_SHA, offline_hint=MODEL_OFFLINE_HINT)
    assert caught.value.status == 404 and caught.value.url == url
    assert url in str(caught.value) and "404" in str(caught.value) and "Model field" in str(caught.value)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_server_that_ignores_range_still_gives_the_right_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "m.safetensors"
    partial_path(dest).write_bytes(DATA[:50_000])
    server.served.ignore_range = True
    download(url_of(server), dest, DATA_SHA)
    assert dest.read_bytes() == DATA
    assert server.served.ranges == ["bytes=50000-"]  # asked to resume, got the whole file, started over


def test_a_complete_partial_is_verified_after_416(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "m.safetensors"
    partial_path(dest).write_bytes(DATA)
    download(url_of(server), dest, DATA_SHA)
    assert dest.read_bytes() == DATA and server.served.ranges == [f"bytes={len(DATA)}-"]


def test_a_damaged_partial_is_never_used(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "m.safetensors"
    partial_path(dest).write_bytes(b"x" * (len(DATA) + 10))  # longer than the file: 416, then start over
    download(url_of(server), dest, DATA_SHA)
    assert dest.read_bytes() == DATA
    partial_path(dest).write_bytes(b"x" * 1000)  # shorter, wrong bytes: resumed, refused, deleted
    dest.unlink()
    with pytest.raises(ChecksumError):
        download(url_of(server), dest, DATA_SHA)
    assert not dest.exists() and not partial_path(dest).exists()
    download(url_of(server), dest, DATA_SHA)  # and the next try starts clean
    assert dest.read_bytes() == DATA


def test_only_http_urls_and_reachable_servers(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="only http"):
        download(f"file://{tmp_path}/m.safetensors", tmp_path / "m.safetensors", DATA_SHA)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach") as caught:
        download(f"http://127.0.0.1:{port}/m", tmp_path / "m.safetensors", DATA_SHA)
    assert str(caught.value).endswith("copy the file to this computer by other means.")


# -- model_store ---------------------------------------------------------------------------------


def test_release_constants_match_the_checkout_model() -> None:
    assert REAL_MODEL.is_file()
    assert REAL_MODEL.stat().st_size == model_store.DEFAULT_MODEL_SIZE
    assert hashlib.sha256(REAL_MODEL.read_bytes()).hexdigest() == model_store.DEFAULT_MODEL_SHA256
    from qgis_clipcd.metadata import metadata

    info = metadata()
    assert (
        f"{info['repository']}/releases/download/v{info['version']}/clipcd-default.safetensors"
    ) == model_store.DEFAULT_MODEL_URL


def test_default_model_prefers_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_store, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setenv(model_store.URL_ENV, "http://127.0.0.1:9/never-used")
    assert model_store.checkout_model() == REAL_MODEL
    assert model_store.default_model_path() == REAL_MODEL
    assert model_store.model_for_run(None) == (str(REAL_MODEL), False)
    assert model_store.model_for_run("/some/chosen.safetensors") == ("/some/chosen.safetensors", False)


def test_a_packaged_plugin_downloads_the_default_model(packaged: Path, server: Server) -> None:
    from qgis_clipcd.models.card import CardError, read_card

    assert model_store.checkout_model() is None and model_store.default_model_path() is None
    assert model_store.model_for_run(None) == (str(packaged / model_store.DEFAULT_MODEL_NAME), True)
    with pytest.raises(CardError, match="downloaded on the first run"):
        read_card(None)
    server.served.drop_after = 1_000_000
    path = model_store.fetch_default_model()
    assert path == packaged / model_store.DEFAULT_MODEL_NAME
    assert path.read_bytes() == REAL_MODEL.read_bytes()
    assert server.served.ranges == [None, "bytes=1000000-"]
    assert model_store.downloaded_model() == path == model_store.default_model_path()
    assert read_card(None) == read_card(REAL_MODEL)
    assert model_store.fetch_default_model() == path and len(server.served.ranges) == 2  # no second download


def test_a_damaged_download_is_not_used(packaged: Path, server: Server) -> None:
    packaged.mkdir()
    damaged = packaged / model_store.DEFAULT_MODEL_NAME
    good = REAL_MODEL.read_bytes()
    damaged.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # right size, one bit wrong
    assert model_store.downloaded_model() is None and model_store.default_model_path() is None
    assert model_store.fetch_default_model() == damaged  # replaced by a verified download
    assert damaged.read_bytes() == good and model_store.downloaded_model() == damaged
    damaged.write_bytes(good[:1000])  # truncated
    assert model_store.downloaded_model() is None
