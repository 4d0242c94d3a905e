"""A real local HTTP server for the model download tests: serves bytes from memory with Range support.

It can be told to drop the connection after N bytes on the first request (closing, resetting or
stalling it), to ignore Range, to answer an error status, or to send slowly; it records the Range
header of every request.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from qgis_clipcd.models.store import DEFAULT_MODEL_NAME
from tests.conftest import REPO_ROOT

#: The checkout's default model: what the release URL serves.
REAL_MODEL = REPO_ROOT / "resources" / "models" / DEFAULT_MODEL_NAME
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
    files: dict[str, bytes] | None = None  # serve these URL paths (404 for any other) instead of ``data``


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
        if served.files is not None:
            found = served.files.get(urlsplit(self.path).path)
            if found is None:
                self.send_error(404)
                return
            data = found
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


@contextmanager
def running_server() -> Iterator[Server]:
    """A release server on a free local port, serving until the block ends."""
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.served = Served()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def base_url(server: Server) -> str:
    """``http://host:port`` of ``server`` (a mirror base for paths in the publishers' layouts)."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def url_of(server: Server, name: str = "model.safetensors") -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{name}"
