"""``mirror demo``: serve the simulated archive on 127.0.0.1 and mirror it, end to end.

Works offline on a fresh install: the archive, its DICOM and its faults are all simulated
in-process; the sync itself is the real one (HTTP client, Dask LocalCluster, ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from mirror.config import SyncConfig
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
    preset: str = "demo",
    seed: int = 0,
    progress: ProgressFn | None = None,
    on_server: Callable[[str], None] | None = None,
) -> DemoResult:
    from mirror.archive.nbia import NbiaArchive
    from mirror.archive.sim import build_preset, serve_archive
    from mirror.sync.ledger import Ledger
    from mirror.sync.service import sync

    sim = build_preset(preset, seed=seed)
    Path(config.dest).mkdir(parents=True, exist_ok=True)
    with serve_archive(sim, host="127.0.0.1", port=0) as server:
        if on_server is not None:
            on_server(server.base_url)
        archive = NbiaArchive(server.base_url)
        try:
            cfg = replace(config, archive_url=server.base_url)
            summary = sync(cfg, archive=archive, progress=progress, today=_sim_today(sim.today))
        finally:
            archive.close()
    with Ledger.open(config.ledger_path) as ledger:
        per_collection = {
            name: states.get("present", 0) for name, states in ledger.counts_by_collection().items()
        }
    return DemoResult(summary, config.dest, server.base_url, per_collection)


def _sim_today(value: date) -> Callable[[], date]:
    # The simulated archive lives on its own calendar; the watermark must follow it.
    return lambda: value
