"""Run the application with uvicorn: in the foreground (CLI) or in a thread (tests, benchmarks).

The listening socket is bound and listening before the server thread starts, so a client
may connect immediately (the kernel queues it) and nobody has to poll or sleep.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mirror.errors import UsageError
from mirror.serve.app import build_service, create_app
from mirror.serve.config import ServeConfig
from mirror.storage.port import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Running:
    base_url: str  # http://host:port
    port: int


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP; without it each answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(1024)
    return sock


def _server(store: Store, config: ServeConfig) -> Any:
    import uvicorn

    app = create_app(build_service(store, config), config)
    uv_config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=30,
        limit_concurrency=512, h11_max_incomplete_event_size=64 * 1024,
        proxy_headers=True, forwarded_allow_ips="127.0.0.1",
    )
    return uvicorn.Server(uv_config)


def serve_forever(store: Store, config: ServeConfig) -> None:
    """Serve until interrupted (SIGINT/SIGTERM are handled by uvicorn)."""
    server = _server(store, config)
    sock = bind(config.host, config.port)
    log.info("serving %s on http://%s:%d/ (DICOMweb at /dicomweb)", store.url, config.host,
             sock.getsockname()[1])
    # uvicorn stops gracefully on SIGTERM and then re-raises it to the previous handler;
    # a no-op there makes a requested stop exit 0 (SIGINT still ends as interrupted, 130).
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    log.info("stopped serving %s", store.url)


@contextlib.contextmanager
def serve_in_thread(store: Store, config: ServeConfig) -> Iterator[Running]:
    """Serve on ``config.host`` (port 0 = any free port) until the block exits."""
    server = _server(store, config)
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="mirror-serve", daemon=True)
    thread.start()
    try:
        yield Running(f"http://{config.host}:{port}", port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
