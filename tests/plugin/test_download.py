"""The default model's download against a real local HTTP server: resume, retries, cancel, checksum.

The server serves bytes from memory with Range support and can be told to drop the connection
after N bytes on the first request, to ignore Range, to answer 404, or to send slowly.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qgis_clipcd import model_store
from qgis_clipcd.download import ChecksumError, DownloadCanceled, DownloadError, download, partial_path
from tests.conftest import REPO_ROOT
from tests.plugin import write_pair
from tests.plugin.helpers import wait_for_task

REAL_MODEL = REPO_ROOT / "resources" / "models" / model_store.DEFAULT_MODEL_NAME
DATA = bytes(range(256)) * 1024  # 256 KiB, every offset distinguishable modulo 256
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Served:
    """What the server sends, how it misbehaves, and the Range header of every request it saw."""

    data: bytes = DATA
    drop_after: int | None = None  # first request only: send this many body bytes, then break
    drop_how: str = "close"  # "close" (FIN), "reset" (RST) or "stall" (stop sending, keep open)
    ignore_range: bool = False
    status: int | None = None  # answer every request with this error status
    delay: float = 0.0  # seconds between 8 KiB blocks
    ranges: list[str | None] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        served = self.server.served
        requested = self.headers.get("Range")
        served.ranges.append(requested)
        if served.status is not None:
            self.send_error(served.status)
            return
        data, start = served.data, 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and not served.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if served.drop_after is not None:
            cut, served.drop_after = served.drop_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            if served.drop_how == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif served.drop_how == "stall":
                time.sleep(1.5)
            self.close_connection = True
            return
        for offset in range(0, len(body), 8192):
            self.wfile.write(body[offset : offset + 8192])
            if served.delay:
                time.sleep(served.delay)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    served: Served


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.served = Served()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def url_of(server: Server, name: str = "model.safetensors") -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{name}"


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
        download(url_of(server), dest, wrong)
    message = str(caught.value)
    assert url_of(server) in message and wrong in message and DATA_SHA in message
    assert "local model file" in message and "Retry" in message
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
        download(url, tmp_path / "m.safetensors", DATA_SHA)
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
    assert "Model field" in str(caught.value)


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


@pytest.fixture
def packaged(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin root without resources/models, a tmp models folder, and the local server as the mirror."""
    root = tmp_path / "plugin"
    (root / "resources" / "icons").mkdir(parents=True)
    monkeypatch.setattr(model_store, "plugin_root", lambda: root)
    monkeypatch.setattr(model_store, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setenv(model_store.URL_ENV, url_of(server, model_store.DEFAULT_MODEL_NAME))
    server.served.data = REAL_MODEL.read_bytes()
    return tmp_path / "models"


def test_a_packaged_plugin_downloads_the_default_model(packaged: Path, server: Server) -> None:
    from qgis_clipcd.card import CardError, read_card

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


# -- in QGIS: the background task and the Processing algorithm ----------------------------------


@pytest.mark.qgis
def test_download_task_runs_in_the_task_manager(packaged: Path, server: Server, qgis_new_project: None) -> None:
    from qgis.core import QgsApplication

    from qgis_clipcd.download_task import DownloadTask

    task = DownloadTask()
    progress: list[float] = []
    task.progressChanged.connect(progress.append)
    QgsApplication.taskManager().addTask(task)
    assert wait_for_task(task, 60)
    assert task.error == "" and task.path == packaged / model_store.DEFAULT_MODEL_NAME
    assert task.path.read_bytes() == REAL_MODEL.read_bytes()
    assert progress and max(progress) == pytest.approx(100.0) and 0 < min(progress) < 100


@pytest.mark.qgis
def test_canceling_the_download_task_leaves_no_model(packaged: Path, server: Server, qgis_new_project: None) -> None:
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication

    from qgis_clipcd.download_task import DownloadTask

    server.served.delay = 0.01  # ~800 blocks of 8 KiB: several seconds
    task = DownloadTask()
    ended: list[bool] = []
    task.taskTerminated.connect(lambda: ended.append(False))
    task.taskCompleted.connect(lambda: ended.append(True))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 30
    while task.progress() < 5 and not ended and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    task.cancel()
    wait_for_task(task, 30)
    assert ended == [False] and task.canceled and task.path is None
    dest = packaged / model_store.DEFAULT_MODEL_NAME
    assert not dest.exists() and partial_path(dest).is_file()


@pytest.mark.qgis
def test_a_detection_waits_for_its_download_subtask(
    packaged: Path, server: Server, tmp_path: Path, qgis_new_project: None
) -> None:
    """The dock's wiring: model_for_run names the file, attach_download makes the run wait for it."""
    from qgis.core import QgsApplication, QgsTask

    from qgis_clipcd.download_task import attach_download

    model, missing = model_store.model_for_run(None)
    assert missing
    seen: dict[str, object] = {}

    class Detect(QgsTask):  # stands in for DetectTask: checks the model is there when it runs
        def run(self) -> bool:
            seen["verified"] = model_store.is_verified(Path(model))
            return True

    task = Detect("detect", QgsTask.Flag.CanCancel)
    download_task = attach_download(task)
    QgsApplication.taskManager().addTask(task)
    assert wait_for_task(task, 60)
    assert seen == {"verified": True} and download_task.path == Path(model)

    failing = Detect("detect", QgsTask.Flag.CanCancel)  # a failed download cancels the run
    server.served.status = 404
    Path(model).unlink()
    model_store._verified.clear()
    seen.clear()
    failed = attach_download(failing)
    ended: list[str] = []
    failing.taskTerminated.connect(lambda: ended.append("terminated"))
    QgsApplication.taskManager().addTask(failing)
    assert wait_for_task(failing, 60)
    assert ended == ["terminated"] and seen == {} and "404" in failed.error


@pytest.fixture
def provider(qgis_processing: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import sys

    from qgis.core import QgsApplication

    from qgis_clipcd.provider import ClipCDProvider

    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    registry = QgsApplication.processingRegistry()
    created = ClipCDProvider()
    assert registry.addProvider(created)
    yield created
    registry.removeProvider(created)


@pytest.mark.qgis
def test_the_algorithm_downloads_the_default_model_when_absent(
    packaged: Path, server: Server, tmp_path: Path, provider: object
) -> None:
    import processing
    from qgis.core import QgsProcessingFeedback, QgsVectorLayer

    class Recorder(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def setProgressText(self, text: str) -> None:
            self.lines.append(text)
            super().setProgressText(text)

        def pushInfo(self, text: str) -> None:
            self.lines.append(text)
            super().pushInfo(text)

    before, after = write_pair(tmp_path / "rasters")
    feedback = Recorder()
    target = tmp_path / "changes.gpkg"
    result = processing.run(
        "clipcd:detect_change",
        {
            "BEFORE": str(before),
            "AFTER": str(after),
            "THRESHOLD": 0.01,
            "DEVICE": "cpu",
            "OUTPUT_POLYGONS": str(target),
        },
        feedback=feedback,
    )
    downloaded = packaged / model_store.DEFAULT_MODEL_NAME
    assert downloaded.read_bytes() == REAL_MODEL.read_bytes() and server.served.ranges == [None]
    assert any(line.startswith("Downloading the default model:") for line in feedback.lines)
    assert any(line.startswith("Engine command:") and str(downloaded) in line for line in feedback.lines)
    assert QgsVectorLayer(str(result["OUTPUT_POLYGONS"]), "changes", "ogr").featureCount() == result["POLYGONS"] >= 1


@pytest.mark.qgis
def test_the_algorithm_reports_a_failed_download(
    packaged: Path, server: Server, tmp_path: Path, provider: object
) -> None:
    import processing
    from qgis.core import QgsProcessingException

    server.served.status = 503
    before, after = write_pair(tmp_path / "rasters")
    params = {"BEFORE": str(before), "AFTER": str(after), "OUTPUT_POLYGONS": str(tmp_path / "changes.gpkg")}
    with pytest.raises(QgsProcessingException, match=r"503.*Model file"):
        processing.run("clipcd:detect_change", params)
    assert not (tmp_path / "changes.gpkg").exists()


@pytest.mark.qgis
def test_the_dock_reports_a_failed_first_download(
    packaged: Path, server: Server, tmp_path: Path, qgis_iface, qgis_new_project: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A packaged plugin with no model and no internet: the run ends with the download's error, not a cancel."""
    from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsSettings

    from qgis_clipcd import task as task_module
    from qgis_clipcd.dock import ClipCDDock

    ran: list[object] = []
    monkeypatch.setattr(task_module, "find_python", lambda: ran.append("python") or "python3")
    QgsSettings().remove("clipcd/model")
    QgsSettings().remove("clipcd/output")
    server.served.status = 404
    dock = ClipCDDock(qgis_iface, check_engine=False)
    assert "downloaded on the first run" in dock.form.model_summary.text()
    before, after = write_pair(tmp_path)
    layers = [QgsRasterLayer(str(path), path.stem) for path in (before, after)]
    QgsProject.instance().addMapLayers(layers)
    dock.form.before.setLayer(layers[0])
    dock.form.after.setLayer(layers[1])
    dock.start()
    running = dock.task
    assert running is not None and running.download is not None
    assert running.params.model == str(packaged / model_store.DEFAULT_MODEL_NAME) and running.params.threshold is None
    out = Path(running.params.out_dir)
    assert wait_for_task(running, 60)
    assert ran == []  # the engine never started
    assert dock.status.text().startswith("The default model could not be downloaded") and "404" in dock.status.text()
    messages = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert len(messages) == 1 and "404" in messages[0]
    assert not out.exists()
