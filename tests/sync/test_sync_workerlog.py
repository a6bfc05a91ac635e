"""The worker-side filter drops the heartbeat failure of a closing worker, and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import pytest

from mirror.sync.workerlog import ClosingHeartbeat

HEARTBEAT = "Failed to communicate with scheduler during heartbeat."


class Status(Enum):  # the names of distributed.core.Status that matter here
    running = "running"
    closing_gracefully = "closing_gracefully"
    closing = "closing"
    closed = "closed"


@dataclass
class FakeWorker:
    status: Status


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, None, None)


@pytest.mark.parametrize("status", [Status.closing_gracefully, Status.closing, Status.closed])
def test_a_closing_workers_heartbeat_failure_is_dropped(status: Status) -> None:
    assert not ClosingHeartbeat(FakeWorker(status)).filter(record(HEARTBEAT))


def test_a_running_workers_heartbeat_failure_is_kept() -> None:
    # A live worker that cannot reach its scheduler is news to the operator.
    assert ClosingHeartbeat(FakeWorker(Status.running)).filter(record(HEARTBEAT))


def test_every_other_record_of_a_closing_worker_is_kept() -> None:
    closing = ClosingHeartbeat(FakeWorker(Status.closing))
    assert closing.filter(record("Worker stream died during communication"))
    assert closing.filter(record("Unexpected exception during heartbeat. Closing worker."))
