"""The composition root of a sync: which source and which destination a run gets.

The engine (:mod:`mirror.sync.service`) receives both ports and opens neither; this module,
above it, builds them: NBIA at ``config.archive_url`` unless a source is given (the CLI's
``--source`` goes through :func:`mirror.archive.sources.open_source`), and the Store at
``config.dest`` with ``config.store_options``. Library callers use :func:`sync` here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from mirror.archive.port import Source
from mirror.archive.sources import open_source
from mirror.config import SyncConfig
from mirror.storage.port import Store
from mirror.sync import service
from mirror.sync.report import RunSummary
from mirror.sync.run import ProgressFn


def open_destination(config: SyncConfig) -> Store:
    from mirror.storage import open_store

    return open_store(config.dest, **dict(config.store_options))


def sync(
    config: SyncConfig,
    *,
    archive: Source | None = None,
    store: Store | None = None,
    today: Callable[[], date] | None = None,
    progress: ProgressFn | None = None,
    fetch_settings: Any = None,
) -> RunSummary:
    """:func:`mirror.sync.service.sync` with the defaults composed: NBIA at
    ``config.archive_url`` (a connection per download a worker runs, as ``mirror sync``
    opens it) and the destination ``config.dest``."""
    connections = config.cluster.downloads_per_worker
    return service.sync(
        config,
        archive=archive or open_source("nbia", config.archive_url, connections=connections),
        store=store or open_destination(config),
        today=today,
        progress=progress,
        fetch_settings=fetch_settings,
    )


__all__ = ["open_destination", "sync"]
