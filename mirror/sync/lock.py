"""The whole-run lock: ``fcntl.flock`` on ``<state_dir>/sync.lock``.

The kernel drops a flock when its process dies, so a crashed run never leaves a stale lock.
The file's content (pid, host, run id) is for humans reading ``LockHeld`` messages.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from mirror.errors import LockHeld, StoreError

LOCK_NAME = "sync.lock"


class RunLock:
    """Hold it with ``with RunLock(state_dir, run_id):``; busy raises LockHeld (exit 75)."""

    def __init__(self, state_dir: str | Path, run_id: str, started_at: str = "") -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self.run_id = run_id
        self.started_at = started_at
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the run lock {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(f"another sync holds {self.path} ({holder})") from exc
        try:
            self._write_holder(fd)
        except OSError as exc:
            # A full or read-only state dir: exit 4 with a message, not a traceback.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise StoreError(f"cannot write the run lock {self.path}: {exc}") from exc
        self._fd = fd

    def _write_holder(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": self.run_id,
            "started_at": self.started_at,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace")
        info = json.loads(raw)
        return f"pid {info.get('pid')} on {info.get('host')}, run {info.get('run_id')}"
    except (OSError, ValueError, AttributeError):
        return "holder unknown"
