"""A fault-injecting HTTP proxy on loopback, in front of the simulated IDC's S3 server.

moto and SeaweedFS serve correct bytes; IDC's readers must also survive what they do not
simulate. Faults are keyed by object key and set on :class:`IdcFaults` while the proxy
runs:

- ``slow_down[key] = n``: the next ``n`` GETs of ``key`` answer 503 SlowDown;
- ``truncate``: the body is cut in half under the full Content-Length, then the connection
  closes;
- ``corrupt``: one byte of the body is changed, the size and the ETag are not;
- ``overlong``: the body is longer than the object the listing describes;
- ``multipart_etag``: listings and GETs show ``"<hex>-2"``, an ETag that is no MD5;
- ``hostile[prefix]``: extra keys (``../``, absolute paths, other prefixes) appear in the
  listing of ``prefix``.
"""

from __future__ import annotations

import http.client
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

_HEX = re.compile(r"[0-9a-f]{32}")
_QUOT = {'"': "&quot;"}


@dataclass
class IdcFaults:
    """Mutable on purpose: a test arms faults while the proxy serves."""

    slow_down: dict[str, int] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    corrupt: set[str] = field(default_factory=set)
    overlong: set[str] = field(default_factory=set)
    multipart_etag: set[str] = field(default_factory=set)
    hostile: dict[str, list[str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # every path asked for, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_slow_down(self, key: str) -> bool:
        with self.lock:
            left = self.slow_down.get(key, 0)
            if left:
                self.slow_down[key] = left - 1
            return left > 0


def _split(path: str) -> tuple[str, str, dict[str, list[str]]]:
    parts = urlsplit(path)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    return bucket, key, parse_qs(parts.query)


def _multipart(etag: str) -> str:
    found = _HEX.search(etag)
    return '"' + (found.group(0) if found else "0" * 32) + '-2"'


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``IdcFaults.requests`` instead."""

    def do_GET(self) -> None:
        faults = self.server.faults
        with faults.lock:
            faults.requests.append(self.path)
        _bucket, key, query = _split(self.path)
        if key and faults.take_slow_down(key):
            self._reply(503, b"<Error><Code>SlowDown</Code></Error>", {"Retry-After": "0"})
            return
        status, headers, body = self._upstream()
        if status == 200 and not key and query.get("list-type") == ["2"]:
            body = self._rewrite_listing(body, query.get("prefix", [""])[0])
        elif status == 200 and key:
            self._object_faults(key, headers, body)
            return
        self._reply(status, body, {"Content-Type": headers.get("Content-Type", "")})

    def _upstream(self) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=30
        )
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def _object_faults(self, key: str, headers: dict[str, str], body: bytes) -> None:
        faults = self.server.faults
        etag = headers.get("ETag", "")
        if key in faults.multipart_etag:
            etag = _multipart(etag)
        if key in faults.corrupt:
            middle = len(body) - 1  # the last pixel byte: the header still parses
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        if key in faults.overlong:
            body += b"\0" * 4096
        out = {"ETag": etag, "Content-Type": "application/octet-stream"}
        if key in faults.truncate:
            self._reply(200, body[: len(body) // 2], out, length=len(body))
            self.close_connection = True
            return
        self._reply(200, body, out)

    def _rewrite_listing(self, body: bytes, prefix: str) -> bytes:
        faults = self.server.faults
        text = body.decode()
        for key in faults.multipart_etag:
            marker = f"<Key>{escape(key)}</Key>"
            at = text.find(marker)
            if at >= 0:
                start = text.find("<ETag>", at) + len("<ETag>")
                end = text.find("</ETag>", start)
                text = text[:start] + escape(_multipart(text[start:end]), _QUOT) + text[end:]
        etag = "&quot;" + "0" * 32 + "&quot;"
        extra = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>5</Size><ETag>{etag}</ETag></Contents>"
            for k in faults.hostile.get(prefix, [])
        )
        if extra:
            text = text.replace("</ListBucketResult>", extra + "</ListBucketResult>")
        return text.encode()

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str], length: int | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if value:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A reader that cancels its other GETs after a failure closes sockets mid-reply.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __init__(self, upstream: str, faults: IdcFaults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults = faults


@contextmanager
def fault_proxy(upstream: str, faults: IdcFaults | None = None) -> Iterator[tuple[str, IdcFaults]]:
    """Serve ``upstream`` (an http://host:port S3 endpoint) through the faults; yields its URL."""
    server = _ProxyServer(upstream, faults or IdcFaults())
    thread = threading.Thread(target=server.serve_forever, name="idc-fault-proxy", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}", server.faults
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


__all__ = ["IdcFaults", "fault_proxy"]
