"""A simulated NCI Imaging Data Commons on loopback (issue #10): a real S3 server holding a
bucket in IDC's layout, the release's Parquet index, successive releases, and faults.

Usage::

    from mirror.archive.idcsim import BucketWriter, IdcSim, fault_proxy, moto_s3
    from mirror.archive.sim import build_preset

    with moto_s3() as endpoint:
        writer = BucketWriter(endpoint, "idc-open-data")
        writer.create_public_bucket()
        idc = IdcSim(build_preset("tiny"), writer)
        release = idc.publish(tmp / "v20")  # idc_index.parquet & co. in tmp/v20
        with fault_proxy(endpoint) as (proxy_url, faults):
            ...  # IdcArchive(index=str(release.index_dir), endpoint=proxy_url)
"""

from __future__ import annotations

from mirror.archive.idcsim.bucket import BucketWriter
from mirror.archive.idcsim.proxy import IdcFaults, fault_proxy
from mirror.archive.idcsim.release import IdcSim, Release, catalog_uuids
from mirror.archive.idcsim.servers import moto_s3, seaweedfs_s3, venv_binary

__all__ = [
    "BucketWriter",
    "IdcFaults",
    "IdcSim",
    "Release",
    "catalog_uuids",
    "fault_proxy",
    "moto_s3",
    "seaweedfs_s3",
    "venv_binary",
]
