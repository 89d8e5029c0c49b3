"""A loopback HTTP server for download tests: per-path bodies, redirects, errors, dropped and stalled
connections, Range support, and a log of every request it received. It binds 127.0.0.1 only."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What the server does for one path."""

    body: bytes = b""
    status: int = 200
    drop_first: int = 0  # the first N requests send half the promised body, then close
    stall_first: int = 0  # the first N requests send half the body, then go silent for a second
    ignore_range: bool = False
    location: str | None = None  # answer with a 302 to this URL
    hits: int = 0


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    path: str
    headers: Message


class Server(ThreadingHTTPServer):
    """Loopback server with per-path behaviour and a log of the requests it received."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}{path}"

    def requests_to(self, path: str) -> list[Recorded]:
        with self.lock:
            return [request for request in self.requests if request.path == path]


class Handler(BaseHTTPRequestHandler):
    """Serves a :class:`Route`, with Range support unless the route ignores it."""

    server: Server

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(Recorded(self.path, self.headers))
            route = self.server.routes.get(self.path)
            if route is not None:
                route.hits += 1
        if route is None:
            self.send_error(404)
        elif route.location is not None:
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route.status != 200:
            self.send_error(route.status)
        else:
            self._send_body(route)

    def _send_body(self, route: Route) -> None:
        start = self._range_start(route)
        if start >= len(route.body) and start > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(route.body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = route.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if route.hits <= route.drop_first:
            self.wfile.write(payload[: len(payload) // 2])
        elif route.hits <= route.stall_first:
            self.wfile.write(payload[: len(payload) // 2])
            time.sleep(1.0)
        else:
            self.wfile.write(payload)

    def _range_start(self, route: Route) -> int:
        value = self.headers.get("Range")
        if route.ignore_range or not value:
            return 0
        return int(value.removeprefix("bytes=").split("-")[0])


@contextmanager
def serve() -> Iterator[Server]:
    """A running :class:`Server` on a background thread, shut down on exit."""
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def make_tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
