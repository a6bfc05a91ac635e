"""A Dask client for index builds: an existing scheduler, or a short-lived LocalCluster."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirror.config import EMBEDDED_DASK_CONFIG


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Connect to ``scheduler``, or start ``workers`` single-threaded worker processes.

    Header parsing in pydicom holds the GIL, so the embedded cluster uses processes.
    """
    import distributed

    # distributed's constructors are untyped; keep them behind Any for mypy --strict.
    client_cls: Any = distributed.Client
    cluster_cls: Any = distributed.LocalCluster

    if scheduler:
        with client_cls(scheduler) as client:
            yield client
        return
    import dask

    n = workers or min(4, os.cpu_count() or 1)
    # Nannies hand this config to the worker processes they start.
    with (
        dask.config.set(EMBEDDED_DASK_CONFIG),
        cluster_cls(n_workers=n, threads_per_worker=1, processes=True,
                    dashboard_address=":0", silence_logs=logging.WARNING) as cluster,
        client_cls(cluster) as client,
    ):
        yield client
