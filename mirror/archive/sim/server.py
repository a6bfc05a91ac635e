"""The simulated archive over real HTTP/1.1 on loopback (stdlib threaded server).

One thread per connection, keep-alive, JSON bodies with Content-Length, ZIP bodies with
chunked transfer encoding and no Content-Length (like the real ``StreamingOutput``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mirror.archive.sim import admin, routes
from mirror.archive.sim.api import Reply
from mirror.archive.sim.model import SimArchive
from mirror.archive.sim.zipstream import ChunkedWriter, Pacer, Truncated

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestLog:
    method: str
    path: str
    params: dict[str, str]
    authorization: str | None


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: SimArchive) -> None:
        super().__init__(address, _Handler)
        self.sim = sim
        self.tokens = routes.TokenStore(sim)
        self.requests: deque[RequestLog] = deque(maxlen=2000)
        self._active = 0
        self._active_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (tests cutting streams, killed benchmarks) are routine here.
        log.debug("connection from %s ended abruptly", client_address, exc_info=True)

    def enter(self) -> bool:
        """Count one in-flight request; False if over the connection cap."""
        limit = self.sim.faults.max_connections
        with self._active_lock:
            if limit is not None and self._active >= limit:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._active_lock:
            self._active -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimHTTPServer
    timeout = 60  # idle keep-alive connections give their thread back

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self._read_body()
        if method == "POST" and "json" not in self.headers.get("Content-Type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        auth = self.headers.get("Authorization")
        self.server.requests.append(RequestLog(method, parts.path, params, auth))
        if not self.server.enter():
            self._send(
                routes.rate_limited(self.server.sim, self.server.sim.faults.over_limit_status)
            )
            return
        try:
            self._latency()
            self._send(self._route(method, parts.path, params, body))
        finally:
            self.server.leave()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _latency(self) -> None:
        latency = self.server.sim.faults.latency
        if latency > 0:
            self.server.sim.sleep(latency)

    def _route(self, method: str, path: str, params: dict[str, str], body: bytes) -> Reply:
        sim = self.server.sim
        if path in routes.TOKEN_PATHS and method == "POST":
            return routes.token_endpoint(sim, self.server.tokens, params)
        if path.startswith("/admin/"):
            return admin.handle(sim, method, path.removeprefix("/admin/"), body)
        for prefix in routes.API_PREFIXES:
            if path.startswith(prefix):
                return self._api(method, path.removeprefix(prefix), params)
        return Reply(404, b"Not Found", "text/plain")

    def _api(self, method: str, name: str, params: dict[str, str]) -> Reply:
        sim = self.server.sim
        endpoint = routes.ENDPOINTS.get(name)
        if endpoint is None or endpoint.method != method:
            return Reply(404 if endpoint is None else 405, b"", "text/plain")
        bad = routes.check_params(name, endpoint, params, sim)
        if bad is not None:
            return bad
        if not routes.bearer_state(self.headers.get("Authorization"), self.server.tokens):
            # Secured endpoints 401; metadata endpoints swallow the error into 200-empty.
            return Reply(401, b"") if endpoint.secured else Reply(200, b"")
        if endpoint.handler is None:
            return routes.download(sim, name, params)
        fault = routes.metadata_fault(sim)
        if fault is not None:
            return fault
        reply = endpoint.handler(sim, params)
        if sim.faults.row_latency > 0 and reply.rows:
            sim.sleep(sim.faults.row_latency * reply.rows)
        return reply

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.stream is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._stream(reply)

    def _stream(self, reply: Reply) -> None:
        assert reply.stream is not None
        sim = self.server.sim
        rate = sim.faults.bandwidth
        pacer = Pacer(rate, sim.clock, sim.sleep) if rate else None
        writer = ChunkedWriter(self.wfile, pacer=pacer, truncate_after=reply.truncate_after)
        try:
            reply.stream(writer)
            writer.finish()
        except Truncated:
            self._drop()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        """Cut the connection mid-body: no final chunk, no central directory."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


@dataclass(slots=True)
class SimServer:
    """A running simulated archive."""

    httpd: SimHTTPServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/nbia-api/services/v4/"

    @property
    def sim(self) -> SimArchive:
        return self.httpd.sim

    @property
    def requests(self) -> deque[RequestLog]:
        return self.httpd.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def start_server(sim: SimArchive, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    httpd = SimHTTPServer((host, port), sim)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-archive", daemon=True
    )
    thread.start()
    return SimServer(httpd, thread)


@contextlib.contextmanager
def serve_archive(sim: SimArchive, host: str = "127.0.0.1", port: int = 0) -> Iterator[SimServer]:
    """Serve ``sim`` in background threads for the duration of the block."""
    server = start_server(sim, host, port)
    try:
        yield server
    finally:
        server.stop()
