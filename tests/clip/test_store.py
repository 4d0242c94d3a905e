"""Fetching CLIP weights from a local server in the publishers' URL layout: progress, resume, hashes, layout."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.clip import store
from backend.clip.catalogue import CATALOGUE_ENV, MIRROR_ENV, catalogue
from backend.download import ChecksumError, DownloadCanceled, partial_path
from backend.errors import InputError, ModelFileError
from backend.model.config import ClipSpec
from backend.model.weights import resolve_weights
from tests.plugin.release_server import DATA, DATA_SHA, Server, base_url

REMOTECLIP_PATH = "/chendelong/RemoteCLIP/resolve/main/RemoteCLIP-ViT-B-32.pt"
RN50_PATH = "/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"


@pytest.fixture
def mirror(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The server stands in for the publishers' hosts; it serves RemoteCLIP's and OpenAI's real paths."""
    monkeypatch.setenv(MIRROR_ENV, base_url(server))
    server.served.files = {REMOTECLIP_PATH: DATA, RN50_PATH: DATA}
    return server


def test_get_downloads_with_progress_and_pins_an_unpublished_hash(mirror: Server, private_clip_folder: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    weights = store.fetch("remoteclip-vit-b-32", on_progress=lambda done, total: seen.append((done, total)))
    assert weights.path == private_clip_folder / "remoteclip-vit-b-32.pt"
    assert weights.path.read_bytes() == DATA and weights.sha256 == DATA_SHA
    assert weights.arch == "ViT-B-32" and weights.source == "catalogue"
    assert seen[-1] == (len(DATA), len(DATA)) and len(seen) > 2
    assert (private_clip_folder / store.REGISTRY_FILE).is_file()
    requests = len(mirror.served.ranges)
    assert store.fetch("remoteclip-vit-b-32") == weights  # present: nothing downloaded again
    assert len(mirror.served.ranges) == requests


def test_get_resumes_after_a_cut_connection(mirror: Server) -> None:
    mirror.served.drop_after = 100_000
    weights = store.fetch("remoteclip-vit-b-32")
    assert weights.path.read_bytes() == DATA
    assert mirror.served.ranges[0] is None and mirror.served.ranges[-1] == "bytes=100000-"


def test_a_canceled_get_keeps_its_partial_file_and_the_next_one_resumes(mirror: Server) -> None:
    big = DATA * 4  # 1 MiB: 16 blocks of the downloader's 64 KiB
    assert mirror.served.files is not None
    mirror.served.files[REMOTECLIP_PATH] = big
    with pytest.raises(DownloadCanceled):
        store.fetch("remoteclip-vit-b-32", is_canceled=_after(3))
    partial = partial_path(store.write_dir() / "remoteclip-vit-b-32.pt")
    kept = partial.stat().st_size
    assert 0 < kept < len(big)
    assert "remoteclip-vit-b-32" not in store.installed()
    assert store.fetch("remoteclip-vit-b-32").path.read_bytes() == big
    assert mirror.served.ranges[-1] == f"bytes={kept}-" and not partial.exists()


def _after(calls: int) -> Callable[[], bool]:
    """A cancel check that says yes from its ``calls + 1``-th call on."""
    count = [0]

    def canceled() -> bool:
        count[0] += 1
        return count[0] > calls

    return canceled


def test_a_wrong_checksum_is_refused_and_nothing_is_left(mirror: Server, private_clip_folder: Path) -> None:
    with pytest.raises(ChecksumError, match="afeb0e10") as caught:
        store.fetch("openai-rn50")
    assert "clip add" in str(caught.value)
    assert sorted(p.name for p in private_clip_folder.iterdir()) == []
    assert store.installed() == {}


def test_a_published_hash_is_checked_and_kept(mirror: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "site.toml"
    table.write_text(
        f'[[clip]]\nname = "site-clip"\narch = "ViT-B-32"\nurl = "https://files.example.org{REMOTECLIP_PATH}"\n'
        f'format = "state-dict"\nsize_mb = 1\nlicence = "MIT"\nsha256 = "{DATA_SHA}"\nnote = "a site catalogue"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(CATALOGUE_ENV, str(table))
    assert list(catalogue()) == ["site-clip"]
    weights = store.fetch("site-clip")
    assert weights.sha256 == DATA_SHA == hashlib.sha256(weights.path.read_bytes()).hexdigest()


def test_offline_the_message_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{port}")
    spec = ClipSpec(model="ViT-B-16-quickgelu")
    with pytest.raises(ModelFileError) as caught:
        resolve_weights(spec, "openai")
    message = str(caught.value)
    assert "clip get openai-vit-b-16" in message and "clip add FILE" in message and "cannot reach" in message
    with pytest.raises(ModelFileError, match="not on this computer") as missing:
        resolve_weights(spec, "openai-vit-b-16", fetch=False)
    assert "clip get openai-vit-b-16" in str(missing.value) and catalogue()["openai-vit-b-16"].url in str(missing.value)


def test_weights_of_another_architecture_are_refused_before_loading(mirror: Server) -> None:
    store.fetch("remoteclip-vit-b-32")
    with pytest.raises(InputError, match="ViT-B-32 model; this model's CLIP is ViT-B-16"):
        resolve_weights(ClipSpec(model="ViT-B-16-quickgelu"), "remoteclip-vit-b-32")


def test_a_file_changed_on_disk_is_refused_and_deleted(mirror: Server) -> None:
    weights = store.fetch("remoteclip-vit-b-32")
    with weights.path.open("ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ModelFileError, match="changed on disk"):
        store.find("remoteclip-vit-b-32")
    assert not weights.path.exists() and "remoteclip-vit-b-32" not in store.installed()


def test_remove_deletes_the_file_and_its_record(mirror: Server) -> None:
    weights = store.fetch("remoteclip-vit-b-32")
    assert store.remove("remoteclip-vit-b-32") == [weights.path]
    assert not weights.path.exists() and store.installed() == {}
    assert store.remove("remoteclip-vit-b-32") == []


def test_the_plugin_and_the_command_line_find_each_others_files(
    mirror: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(store.DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    profile = tmp_path / "data" / "QGIS" / "QGIS3" / "profiles" / "default"
    monkeypatch.setenv(store.PROFILE_ENV, str(profile))  # the plugin's engine
    from_plugin = store.fetch("remoteclip-vit-b-32")
    assert from_plugin.path.parent == profile / "clipcd" / "clip"
    monkeypatch.delenv(store.PROFILE_ENV)  # the command line
    assert store.write_dir() == tmp_path / "cache" / "clipcd" / "clip"
    assert store.find("remoteclip-vit-b-32") == from_plugin
    assert mirror.served.files is not None
    mirror.served.files["/Zilun/GeoRSCLIP/resolve/main/ckpt/RS5M_ViT-B-32.pt"] = DATA
    from_cli = store.fetch("georsclip-vit-b-32")
    assert from_cli.path.parent == tmp_path / "cache" / "clipcd" / "clip"
    monkeypatch.setenv(store.PROFILE_ENV, str(profile))
    assert set(store.installed()) == {"remoteclip-vit-b-32", "georsclip-vit-b-32"}
