"""A simulated IDC for tests: the tiny preset's series published to a fresh bucket on the
session's moto server, optionally behind the fault proxy."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirror.archive.idc import IdcArchive, IdcSeries
from mirror.archive.idcsim import BucketWriter, IdcFaults, IdcSim, Release, fault_proxy
from mirror.archive.sim import SimArchive

_BUCKETS = itertools.count()


@dataclass
class IdcWorld:
    sim: SimArchive
    idc: IdcSim
    writer: BucketWriter
    endpoint: str  # what the adapter reads (the proxy when faults are armed)
    faults: IdcFaults
    tmp: Path
    release: Release

    def publish(self) -> Release:
        self.release = self.idc.publish(self.tmp / f"v{self.idc.version + 1}")
        return self.release

    def archive(self, release: Release | None = None) -> IdcArchive:
        chosen = release or self.release
        return IdcArchive(str(chosen.index_dir), endpoint=self.endpoint, env={})

    def series(self, collection: str = "Sim-Lung", n: int = 0) -> IdcSeries:
        return self.archive().idc_series([collection])[n]

    def staged_equals_bucket(self, staging: Path, series: IdcSeries) -> bool:
        names = sorted(p.name for p in staging.iterdir())
        keys = sorted(self.writer.keys(f"{series.crdc_series_uuid}/"))
        if names != [k.split("/", 1)[1] for k in keys]:
            return False
        return all((staging / k.split("/", 1)[1]).read_bytes() == self.writer.get(k) for k in keys)


@contextmanager
def idc_world(sim: SimArchive, s3_endpoint: str, tmp: Path) -> Iterator[IdcWorld]:
    writer = BucketWriter(s3_endpoint, f"idc-open-data-{next(_BUCKETS)}")
    writer.create_public_bucket()
    idc = IdcSim(sim, writer)
    release = idc.publish(tmp / "v20")
    with fault_proxy(s3_endpoint) as (proxy, faults):
        yield IdcWorld(sim, idc, writer, proxy, faults, tmp, release)
    writer.close()
