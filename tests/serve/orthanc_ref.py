"""Run Orthanc + its DICOMweb plugin (Debian packages) on 127.0.0.1 as a reference server.

Readiness comes from Orthanc's own "Orthanc has started" log line (read, not polled).
Used by the comparison tests and benchmarks/serve.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_orthanc(binary: str, plugin: str, workdir: Path) -> Iterator[str]:
    """Start Orthanc; yield its base URL (DICOMweb at ``/dicom-web``)."""
    port = free_port()
    config = {"Name": "reference", "StorageDirectory": str(workdir / "db"),
              "IndexDirectory": str(workdir / "db"), "HttpPort": port,
              "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "HttpCompressionEnabled": False,
              "Plugins": [plugin],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "QidoCaseSensitive": False,
                           "StudiesMetadata": "Full", "SeriesMetadata": "Full"}}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([binary, str(workdir / "orthanc.json")], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # blocks until Orthanc reports it is up (or dies)
            if "Orthanc has started" in line:
                break
        else:
            raise RuntimeError(f"Orthanc exited with {proc.wait()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def upload(base: str, files: Iterable[bytes]) -> int:
    """Import DICOM files through Orthanc's REST API; return how many were stored."""
    with httpx.Client(timeout=120) as client:
        n = 0
        for blob in files:
            r = client.post(f"{base}/instances", content=blob,
                            headers={"Content-Type": "application/dicom"})
            r.raise_for_status()
            n += 1
        return n
