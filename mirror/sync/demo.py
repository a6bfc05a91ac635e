"""``mirror demo``: mirror a simulated source served on 127.0.0.1, end to end.

Works offline on a fresh install: the source (the simulated NBIA API, or a simulated IDC
release on a loopback S3 server; built by the CLI, :mod:`mirror.cli.demo_sources`) is
simulated in-process; the sync itself is the real one (HTTP, Dask LocalCluster, ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from mirror.archive.port import Source
from mirror.config import SyncConfig
from mirror.storage.port import Store
from mirror.sync.report import RunSummary
from mirror.sync.run import ProgressFn


@dataclass(frozen=True, slots=True)
class DemoResult:
    summary: RunSummary
    dest: str
    archive_url: str
    collections: dict[str, int]  # collection -> series mirrored


def demo(
    config: SyncConfig,
    *,
    source: Source,
    store: Store,
    url: str,
    today: date,
    progress: ProgressFn | None = None,
) -> DemoResult:
    """Mirror the running simulated ``source`` (at ``url``) into ``store`` (``config.dest``)."""
    from mirror.sync.ledger import Ledger
    from mirror.sync.service import sync

    Path(config.dest).mkdir(parents=True, exist_ok=True)
    cfg = replace(config, archive_url=url)
    summary = sync(cfg, archive=source, store=store, progress=progress, today=_sim_today(today))
    with Ledger.open(config.ledger_path) as ledger:
        per_collection = {
            name: states.get("present", 0) for name, states in ledger.counts_by_collection().items()
        }
    return DemoResult(summary, config.dest, url, per_collection)


def _sim_today(value: date) -> Callable[[], date]:
    # The simulated archive lives on its own calendar; the watermark must follow it.
    return lambda: value
