"""The IDC adapter against the simulated IDC over real HTTP (moto on 127.0.0.1, behind the
fault proxy): listing from the release's Parquet, fetching with every check, every fault
detected with nothing left in staging, hostile keys refused, release-to-release changes."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mirror.archive.idc import IdcArchive, IdcIndex, diff_releases
from mirror.archive.sim import SimArchive
from mirror.errors import (
    ArchiveProtocolError,
    ChecksumMismatch,
    IncompleteSeries,
    RateLimited,
    TruncatedDownload,
    UnsafeArchiveEntry,
    WrongInstance,
)
from tests.archive.idc_support import IdcWorld, idc_world


@pytest.fixture
def world(sim: SimArchive, moto_endpoint: str, tmp_path: Path) -> Iterator[IdcWorld]:
    with idc_world(sim, moto_endpoint, tmp_path) as built:
        yield built


def _object_gets(world: IdcWorld) -> list[str]:
    return [p for p in world.faults.requests if "list-type" not in p]


# --- listing ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Sim-Lung", "sim_lung", "SIM LUNG", "sim-lung"])
def test_collections_by_either_spelling(world: IdcWorld, name: str) -> None:
    archive = world.archive()
    assert sorted(c.name for c in archive.collections()) == ["Sim-Brain", "Sim-Lung"]
    assert sorted(r.series_uid for r in archive.series(name)) == sorted(
        world.sim.series_uids("Sim-Lung")
    )


def test_listing_never_touches_the_bucket(world: IdcWorld) -> None:
    archive = world.archive()
    archive.collections()
    archive.series("Sim-Brain")
    assert world.faults.requests == []


def test_records_carry_the_index_promises(world: IdcWorld) -> None:
    for record in world.archive().series():
        assert record.image_count == len(world.sim.true_md5s(record.series_uid))
        assert record.file_size == world.sim.file_size(record.series_uid)
        assert record.date_released == world.sim.today


def test_the_nbia_shaped_download_half_is_refused_clearly(world: IdcWorld) -> None:
    archive = world.archive()
    uid = world.sim.series_uids()[0]
    with pytest.raises(ArchiveProtocolError, match="not NBIA's ZIP"), archive.stream_series(uid):
        pass
    with pytest.raises(ArchiveProtocolError, match="lists no instances"):
        archive.sop_instance_uids(uid)


# --- fetch and verification ------------------------------------------------------------


def test_fetch_stages_the_bucket_bytes_with_every_check_passed(world: IdcWorld) -> None:
    series = world.series()
    staging = world.tmp / "staging" / series.series_uid
    fetched = world.archive().fetch(series, staging)
    assert world.staged_equals_bucket(staging, series)
    assert len(fetched.instances) == series.instance_count
    assert fetched.total_bytes == series.expected_bytes
    assert dict(fetched.checks) == {"count": "passed", "bytes": "passed", "sop_unique": "passed"}
    for item in fetched.instances:
        assert dict(item.checks) == {
            "size": "passed",
            "md5_etag": "passed",
            "dicom_series": "passed",
        }
    assert sorted(i.md5 for i in fetched.instances) == sorted(
        world.sim.true_md5s(series.series_uid)
    )
    # Exactly one listing of the series' own prefix, never of the bucket.
    listings = [p for p in world.faults.requests if "list-type" in p]
    assert len(listings) == 1 and f"prefix={series.crdc_series_uuid}" in listings[0]


def test_fetch_many_one_loop_many_series(world: IdcWorld) -> None:
    archive = world.archive()
    work = [(s, world.tmp / "many" / s.series_uid) for s in archive.idc_series()]
    results = archive.fetch_many(work, series_in_flight=3)
    assert [r.series.series_uid for r in results] == [s.series_uid for s, _ in work]  # type: ignore[union-attr]
    assert all(world.staged_equals_bucket(path, s) for s, path in work)


def test_slow_down_is_retried_and_converges(world: IdcWorld) -> None:
    series = world.series()
    key = world.idc.object_keys(series.series_uid)[0]
    world.faults.slow_down[key] = 3
    staging = world.tmp / "s"
    world.archive().fetch(series, staging)
    assert world.staged_equals_bucket(staging, series)
    assert world.faults.slow_down[key] == 0


def test_slow_down_that_never_ends_fails_and_leaves_nothing(world: IdcWorld) -> None:
    series = world.series()
    world.faults.slow_down[world.idc.object_keys(series.series_uid)[1]] = 1000
    staging = world.tmp / "s"
    with pytest.raises(RateLimited, match="SlowDown"):
        world.archive().fetch(series, staging)
    assert not staging.exists()


def test_truncated_body_is_detected_and_nothing_is_left(world: IdcWorld) -> None:
    series = world.series()
    world.faults.truncate.add(world.idc.object_keys(series.series_uid)[0])
    staging = world.tmp / "s"
    with pytest.raises(TruncatedDownload, match=r"cut short|bytes, the listing said"):
        world.archive().fetch(series, staging)
    assert not staging.exists()


def test_changed_bytes_under_the_old_etag_fail_the_md5(world: IdcWorld) -> None:
    series = world.series()
    world.faults.corrupt.add(world.idc.object_keys(series.series_uid)[-1])
    staging = world.tmp / "s"
    with pytest.raises(ChecksumMismatch, match="the ETag says"):
        world.archive().fetch(series, staging)
    assert not staging.exists()


def test_a_body_longer_than_listed_is_refused(world: IdcWorld) -> None:
    series = world.series()
    world.faults.overlong.add(world.idc.object_keys(series.series_uid)[0])
    with pytest.raises(IncompleteSeries, match="more than the"):
        world.archive().fetch(series, world.tmp / "s")
    assert not (world.tmp / "s").exists()


def test_multipart_etag_is_recorded_as_not_an_md5(world: IdcWorld) -> None:
    series = world.series()
    key = world.idc.object_keys(series.series_uid)[0]
    world.faults.multipart_etag.add(key)
    fetched = world.archive().fetch(series, world.tmp / "s")
    by_name = {i.name: i for i in fetched.instances}
    odd = by_name[key.split("/", 1)[1]]
    assert odd.etag_kind == "multipart" and odd.checks["md5_etag"] == "not_applicable"
    assert all(i.checks["md5_etag"] == "passed" for i in fetched.instances if i is not odd)


def test_changed_bytes_under_a_multipart_etag_pass_what_can_be_checked(world: IdcWorld) -> None:
    # What IDC's ETags cannot catch: the record says so instead of claiming a pass.
    series = world.series()
    key = world.idc.object_keys(series.series_uid)[0]
    world.faults.multipart_etag.add(key)
    world.faults.corrupt.add(key)
    fetched = world.archive().fetch(series, world.tmp / "s")
    odd = next(i for i in fetched.instances if i.etag_kind == "multipart")
    assert odd.checks["md5_etag"] == "not_applicable"


@pytest.mark.parametrize(
    "hostile",
    [
        "{uuid}/../../../etc/passwd",
        "{uuid}/../evil.dcm",
        "/etc/passwd",
        "{uuid}//abs.dcm",
        "{uuid}/sub/{name}",
        "00000000-0000-0000-0000-000000000000/{name}",
        "{uuid}/%2e%2e/{name}",
        "{uuid}/{name}/..",
    ],
)
def test_hostile_keys_are_refused_before_any_byte(world: IdcWorld, hostile: str) -> None:
    series = world.series()
    name = world.idc.object_keys(series.series_uid)[0].split("/", 1)[1]
    world.faults.hostile[f"{series.crdc_series_uuid}/"] = [
        hostile.format(uuid=series.crdc_series_uuid, name=name)
    ]
    staging = world.tmp / "s"
    with pytest.raises(UnsafeArchiveEntry, match="refused object key"):
        world.archive().fetch(series, staging)
    assert not staging.exists()
    assert _object_gets(world) == []


def test_a_missing_object_fails_the_count_before_any_get(world: IdcWorld) -> None:
    series = world.series()
    world.writer.delete(world.idc.object_keys(series.series_uid)[0])
    with pytest.raises(IncompleteSeries, match="instanceCount"):
        world.archive().fetch(series, world.tmp / "s")
    assert _object_gets(world) == [] and not (world.tmp / "s").exists()


def test_a_duplicate_instance_fails_the_sop_uniqueness(world: IdcWorld) -> None:
    series = world.series()
    first, second = world.idc.object_keys(series.series_uid)[:2]
    world.writer.put(second, world.writer.get(first))  # same size: count and bytes still agree
    with pytest.raises(WrongInstance, match="repeats SOPInstanceUID"):
        world.archive().fetch(series, world.tmp / "s")
    assert not (world.tmp / "s").exists()


def test_an_instance_of_another_series_fails_the_identity(world: IdcWorld) -> None:
    # A twin (same collection, patient, modality, shape) has instances of the same size, so
    # count, bytes and the ETag all agree: only the DICOM header tells them apart.
    series = world.series("Sim-Lung", 0)
    record = world.sim.record(series.series_uid)
    twin = world.sim.add_series(
        "Sim-Lung",
        patient_id=record.patient_id,
        modality=record.modality,
        n_instances=record.image_count,
        rows=32,
        cols=32,
    )
    assert world.sim.instance_size(twin) == world.sim.instance_size(series.series_uid)
    world.publish()
    stolen = world.writer.get(world.idc.object_keys(twin)[0])
    world.writer.put(world.idc.object_keys(series.series_uid)[0], stolen)
    with pytest.raises(WrongInstance, match="expected"):
        world.archive().fetch(series, world.tmp / "s")
    assert not (world.tmp / "s").exists()


def test_an_existing_staging_folder_is_never_mixed_into(world: IdcWorld) -> None:
    series = world.series()
    staging = world.tmp / "s"
    staging.mkdir()
    (staging / "stale.dcm").write_bytes(b"old")
    with pytest.raises(Exception, match="already exists"):
        world.archive().fetch(series, staging)
    assert [p.name for p in staging.iterdir()] == ["stale.dcm"]


def test_adapter_pickles(world: IdcWorld) -> None:
    clone = pickle.loads(pickle.dumps(world.archive()))
    series = clone.idc_series(["Sim-Brain"])[0]
    clone.fetch(series, world.tmp / "p")
    assert world.staged_equals_bucket(world.tmp / "p", series)


# --- releases -------------------------------------------------------------------------------


def test_release_to_release_new_revised_removed(world: IdcWorld) -> None:
    sim = world.sim
    before = world.archive()
    lung = sim.series_uids("Sim-Lung")
    revised_uid, removed_uid = lung[0], lung[1]
    old_uuid = before.versions()[revised_uid]
    sim.today += timedelta(days=90)
    added = sim.add_series("Sim-Lung", patient_id="SL-003", modality="CT", n_instances=2)
    sim.replace_instance(revised_uid, 0)
    sim.withdraw_series(removed_uid)
    world.publish()
    after = world.archive()

    diff = diff_releases(before.versions(), after.versions())
    assert diff.new == (added,)
    assert [(r.series_uid, r.old_uuid) for r in diff.revised] == [(revised_uid, old_uuid)]
    assert diff.removed == (removed_uid,)
    assert diff.unchanged == len(sim.series_uids()) - 2

    # IDC keeps the old prefix; prior_versions_index says which uuid ended when.
    assert world.writer.keys(f"{old_uuid}/")
    prior = after.index.prior_versions([revised_uid, removed_uid])
    assert prior[revised_uid] == [(old_uuid, 20, 20)]
    assert prior[removed_uid][0][2] == 20
    updated = after.updated_series(sim.today - timedelta(days=1))
    assert {r.series_uid for r in updated} == {added, revised_uid}

    # The revised series is fetched from its new prefix, with its new bytes.
    revised = after.idc_series(series_uid=revised_uid)[0]
    assert revised.crdc_series_uuid != old_uuid and revised.revised_version == 21
    fetched = after.fetch(revised, world.tmp / "r")
    assert sorted(i.md5 for i in fetched.instances) == sorted(sim.true_md5s(revised_uid))


def test_index_from_a_url(world: IdcWorld, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(world.release.index_dir)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        index = IdcIndex.open(url)
        assert index.versions() == world.archive().versions()
        assert index.release == "20.0.0"
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_choice(world: IdcWorld) -> None:
    index = str(world.release.index_dir)
    assert IdcArchive(index, env={}).url == "https://s3.amazonaws.com"
    assert IdcArchive(index, gcs=True, env={}).url == "https://storage.googleapis.com"
    from_env = IdcArchive(index, env={"MIRROR_IDC_ENDPOINT": "http://127.0.0.1:9"})
    assert from_env.url == "http://127.0.0.1:9"
    assert IdcArchive(
        index, endpoint="http://127.0.0.1:8", env={"MIRROR_IDC_ENDPOINT": "x"}
    ).url.endswith(":8")


def test_simulated_idc_in_one_call(tmp_path: Path) -> None:
    from mirror.archive.idcsim import simulated_idc
    from mirror.archive.sim import build_preset

    sim = build_preset("tiny", seed=3)
    with simulated_idc(sim, tmp_path) as running:
        archive = IdcArchive(str(running.first.index_dir), endpoint=running.endpoint, env={})
        assert sorted(archive.versions()) == sorted(sim.series_uids())
        sim.withdraw_series(sim.series_uids()[0])
        second = running.idc.publish(tmp_path / "next")
        assert len(second.removed) == 1 and second.version == running.first.version + 1
