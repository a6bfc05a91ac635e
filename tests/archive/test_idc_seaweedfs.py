"""The real-server tier: the simulated IDC on SeaweedFS (``weed mini`` on 127.0.0.1), read
anonymously by the adapter, every series of two releases fetched and compared byte for byte
with the bucket."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mirror.archive.idc import IdcArchive, SeriesFetch, diff_releases
from mirror.archive.idcsim import BucketWriter, IdcSim, seaweedfs_s3
from mirror.archive.sim import build_preset

pytestmark = pytest.mark.slow


def test_two_releases_from_seaweedfs(tmp_path: Path) -> None:
    sim = build_preset("tiny", seed=2)
    with seaweedfs_s3(tmp_path / "weed") as endpoint:
        writer = BucketWriter(endpoint, "idc-open-data")
        writer.create_public_bucket()
        idc = IdcSim(sim, writer)
        first = IdcArchive(str(idc.publish(tmp_path / "v20").index_dir), endpoint=endpoint, env={})
        sim.today += timedelta(days=30)
        sim.replace_instance(sim.series_uids()[0], 1)
        second = IdcArchive(str(idc.publish(tmp_path / "v21").index_dir), endpoint=endpoint, env={})
        diff = diff_releases(first.versions(), second.versions())
        assert [r.series_uid for r in diff.revised] == [sim.series_uids()[0]]

        work = [(s, tmp_path / "staging" / s.series_uid) for s in second.idc_series()]
        results = second.fetch_many(work)
        for (series, staging), result in zip(work, results, strict=True):
            assert isinstance(result, SeriesFetch), result
            for key in writer.keys(f"{series.crdc_series_uuid}/"):
                assert (staging / key.split("/", 1)[1]).read_bytes() == writer.get(key)
            assert sorted(i.md5 for i in result.instances) == sorted(
                sim.true_md5s(series.series_uid)
            )
            assert all(i.checks["md5_etag"] == "passed" for i in result.instances)
        writer.close()
