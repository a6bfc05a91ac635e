"""A simulated NCI Imaging Data Commons on loopback (issue #10): a real S3 server holding a
bucket in IDC's layout, the release's Parquet index, successive releases, and faults.

Usage::

    from mirror.archive.idc import IdcArchive
    from mirror.archive.idcsim import fault_proxy, simulated_idc
    from mirror.archive.sim import build_preset

    with simulated_idc(build_preset("tiny"), tmp) as running:  # moto; or backend="seaweedfs"
        archive = IdcArchive(str(running.first.index_dir), endpoint=running.endpoint)
        with fault_proxy(running.endpoint) as (proxy_url, faults):
            ...  # IdcArchive(..., endpoint=proxy_url) sees the armed faults
        running.idc.sim.withdraw_series(uid)
        second = running.idc.publish(tmp / "next")  # the next release
"""

from __future__ import annotations

from mirror.archive.idcsim.bucket import BucketWriter
from mirror.archive.idcsim.proxy import IdcFaults, fault_proxy
from mirror.archive.idcsim.release import IdcSim, Release, catalog_uuids
from mirror.archive.idcsim.serve import RunningIdc, simulated_idc
from mirror.archive.idcsim.servers import moto_s3, seaweedfs_s3, venv_binary

__all__ = [
    "BucketWriter",
    "IdcFaults",
    "IdcSim",
    "Release",
    "RunningIdc",
    "catalog_uuids",
    "fault_proxy",
    "moto_s3",
    "seaweedfs_s3",
    "simulated_idc",
    "venv_binary",
]
