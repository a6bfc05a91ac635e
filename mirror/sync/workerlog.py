"""Worker-side logging for embedded clusters: loaded as a Dask preload in each worker process.

Closing a LocalCluster races a worker's periodic heartbeat against the scheduler dropping
that worker: the heartbeat's connection closes under it and the worker logs "Failed to
communicate with scheduler during heartbeat" with a traceback (dask/distributed#7105), on a
run that succeeded. Only that record is dropped, and only from a worker that is shutting
down; every other worker log line stays.
"""

from __future__ import annotations

import logging
from typing import Any

_HEARTBEAT = "Failed to communicate with scheduler during heartbeat"


class ClosingHeartbeat(logging.Filter):
    """Drops the heartbeat failure of a worker whose run is over."""

    def __init__(self, worker: Any) -> None:
        super().__init__()
        self._worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_HEARTBEAT):
            return True
        # distributed.core.Status: running, then closing_gracefully / closing / closed.
        status = getattr(self._worker, "status", None)
        return getattr(status, "name", "running") == "running"


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, called as the worker starts."""
    logging.getLogger("distributed.worker").addFilter(ClosingHeartbeat(worker))
