"""One call for a running simulated IDC (what ``mirror demo --source idc`` and manual
runs need): an S3 server on loopback, a public bucket, and the first release published."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mirror.archive.idcsim.bucket import BucketWriter
from mirror.archive.idcsim.release import IdcSim, Release
from mirror.archive.idcsim.servers import moto_s3, seaweedfs_s3
from mirror.archive.sim.model import SimArchive

Backend = Literal["moto", "seaweedfs"]


@dataclass(frozen=True, slots=True)
class RunningIdc:
    endpoint: str  # for IdcArchive(endpoint=...) / MIRROR_IDC_ENDPOINT
    idc: IdcSim  # publish() again after changing ``idc.sim`` for the next release
    first: Release  # ``first.index_dir`` is the --idc-index DIR


@contextmanager
def simulated_idc(
    sim: SimArchive,
    work_dir: Path,
    *,
    backend: Backend = "moto",
    bucket: str = "idc-open-data",
    catalog_uuids: dict[str, str] | None = None,
) -> Iterator[RunningIdc]:
    """Serve ``sim``'s series as IDC would, under ``work_dir`` (index folders, server data)."""
    with ExitStack() as stack:
        if backend == "seaweedfs":
            endpoint = stack.enter_context(seaweedfs_s3(work_dir / "seaweedfs"))
        else:
            endpoint = stack.enter_context(moto_s3())
        writer = BucketWriter(endpoint, bucket)
        stack.callback(writer.close)
        writer.create_public_bucket()
        idc = IdcSim(sim, writer, catalog_uuids=catalog_uuids)
        first = idc.publish(work_dir / f"release-{idc.version + 1}")
        yield RunningIdc(endpoint, idc, first)


__all__ = ["Backend", "RunningIdc", "simulated_idc"]
