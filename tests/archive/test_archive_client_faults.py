"""NbiaArchive under every fault the simulated archive can inject."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable

import pytest

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import FaultConfig, SimArchive, SimServer
from mirror.errors import (
    AccessDenied,
    ArchiveProtocolError,
    ArchiveUnavailable,
    RateLimited,
    TruncatedDownload,
)

MakeClient = Callable[..., NbiaArchive]  # the make_client fixture (tests/archive/conftest.py)


def _fetch(archive: NbiaArchive, uid: str) -> zipfile.ZipFile:
    with archive.stream_series(uid) as chunks:
        return zipfile.ZipFile(io.BytesIO(b"".join(chunks)))


def _downloads(server: SimServer) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in server.requests if "getImage" in r.path]


def test_metadata_500s_are_retried_with_backoff(
    archive: NbiaArchive, sim: SimArchive, archive_sleeps: list[float]
) -> None:
    sim.faults = FaultConfig(metadata_fail_next=3)
    assert len(archive.series()) == len(sim.series_uids())
    assert len(archive_sleeps) == 3
    assert archive_sleeps[0] < archive_sleeps[2]  # exponential (plus at most 1 s jitter)


def test_retry_after_is_honoured(
    archive: NbiaArchive, sim: SimArchive, archive_sleeps: list[float]
) -> None:
    sim.faults = FaultConfig(metadata_rate_limit_next=2, retry_after=42)
    assert archive.collections()
    assert archive_sleeps == [42.0, 42.0]


def test_metadata_gives_up_after_the_attempt_budget(
    make_client: MakeClient, archive_server: SimServer, sim: SimArchive
) -> None:
    sleeps: list[float] = []
    client = make_client(archive_server.base_url, attempts=3, sleep=sleeps.append)
    sim.faults = FaultConfig(metadata_fail_next=5)
    with pytest.raises(ArchiveUnavailable):
        client.collections()
    assert len(sleeps) == 2
    assert sim.fault_state.counts["metadata_fail_next"] == 2


def test_download_500_raises_retryable_without_retrying(
    archive: NbiaArchive, archive_server: SimServer, sim: SimArchive
) -> None:
    uid = sim.series_uids()[0]
    sim.faults = FaultConfig(fail_next=1)
    with pytest.raises(ArchiveUnavailable) as info, archive.stream_series(uid):
        pass
    assert info.value.retryable
    assert len(_downloads(archive_server)) == 1  # the sync task owns download retries
    assert len(_fetch(archive, uid).namelist()) == len(sim.true_md5s(uid)) + 2


def test_download_429_carries_retry_after(archive: NbiaArchive, sim: SimArchive) -> None:
    sim.faults = FaultConfig(rate_limit_next=1, retry_after=17)
    with pytest.raises(RateLimited) as info, archive.stream_series(sim.series_uids()[0]):
        pass
    assert info.value.retry_after == 17.0


def test_access_denied_is_not_retried(
    archive: NbiaArchive, archive_server: SimServer, sim: SimArchive
) -> None:
    uid = sim.series_uids()[0]
    sim.faults = FaultConfig(withdraw_next=1)  # withdrawn between listing and download
    assert uid in {r.series_uid for r in archive.series()}
    with pytest.raises(AccessDenied) as info, archive.stream_series(uid):
        pass
    assert not info.value.retryable
    assert len(_downloads(archive_server)) == 1


def test_truncated_stream_raises_truncated_download(archive: NbiaArchive, sim: SimArchive) -> None:
    uid = sim.series_uids("Sim-Lung")[-1]
    sim.faults = FaultConfig(truncate_next=1, truncate_after=5000)
    received = bytearray()
    with pytest.raises(TruncatedDownload) as info, archive.stream_series(uid) as chunks:
        for chunk in chunks:
            received += chunk
    assert info.value.retryable
    assert len(received) <= 5000
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    assert _fetch(archive, uid).testzip() is None  # the next download is whole


def test_short_zip_is_valid_but_missing_images(archive: NbiaArchive, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.faults = FaultConfig(short_next=1, short_missing=2)
    names = _fetch(archive, uid).namelist()
    assert len([n for n in names if n.endswith(".dcm")]) == len(sim.true_md5s(uid)) - 2
    assert names[0] == "LICENSE" and names[-1] == "md5hashes.csv"


def test_license_only_zip(archive: NbiaArchive, sim: SimArchive) -> None:
    sim.faults = FaultConfig(license_only_next=1)
    zf = _fetch(archive, sim.series_uids()[0])
    assert zf.namelist() == ["LICENSE", "md5hashes.csv"]
    assert zf.read("md5hashes.csv") == b"Filename,MD5Hash\n"


def test_wrong_stored_md5_only_for_chosen_instances(archive: NbiaArchive, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.faults = FaultConfig(wrong_md5=frozenset({(uid, 1)}))
    zf = _fetch(archive, uid)
    rows = dict(line.split(",") for line in zf.read("md5hashes.csv").decode().splitlines()[1:])
    true = sim.true_md5s(uid)
    wrong = {name for name, h in rows.items() if h.zfill(32) not in true}
    assert len(wrong) == 1


def test_faults_target_only_chosen_series(archive: NbiaArchive, sim: SimArchive) -> None:
    hit, spared = sim.series_uids()[:2]
    sim.faults = FaultConfig(fail_next=5, series=frozenset({hit}))
    assert _fetch(archive, spared).namelist()
    with pytest.raises(ArchiveUnavailable), archive.stream_series(hit):
        pass
    assert sim.fault_state.counts["fail_next"] == 4


def test_seeded_error_rate_is_reproducible(
    make_client: MakeClient, archive_server: SimServer, sim: SimArchive
) -> None:
    client = make_client(archive_server.base_url)
    uid = sim.series_uids()[0]

    def outcomes() -> list[bool]:
        sim.faults = FaultConfig(error_rate=0.5)
        result = []
        for _ in range(12):
            try:
                with client.stream_series(uid) as chunks:
                    b"".join(chunks)
                result.append(True)
            except ArchiveUnavailable:
                result.append(False)
        return result

    first = outcomes()
    assert first == outcomes()
    assert True in first and False in first


def test_old_server_falls_back_to_get_image_with_md5_hash(
    archive: NbiaArchive, archive_server: SimServer, sim: SimArchive
) -> None:
    sim.supports_include_md5 = False
    uid = sim.series_uids()[0]
    names = _fetch(archive, uid).namelist()
    assert names[-1] == "md5hashes.csv" and "LICENSE" not in names
    assert archive.legacy_download
    _fetch(archive, uid)
    assert _downloads(archive_server) == ["getImage", "getImageWithMD5Hash", "getImageWithMD5Hash"]


def test_new_server_uses_get_image_with_md5_and_new_names(
    archive: NbiaArchive, archive_server: SimServer, sim: SimArchive
) -> None:
    names = _fetch(archive, sim.series_uids()[0]).namelist()
    assert names[0] == "LICENSE" and names[1] == "1-1.dcm" and names[-1] == "md5hashes.csv"
    last = archive_server.requests[-1]
    assert last.params == {
        "SeriesInstanceUID": sim.series_uids()[0],
        "IncludeMD5": "Yes",
        "NewFileNames": "Yes",
    }
    assert last.authorization is None  # guest: no Authorization header at all


def test_connection_cap_answers_429(
    make_client: MakeClient, archive: NbiaArchive, archive_server: SimServer, sim: SimArchive
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(_seconds: float) -> None:  # the first request parks inside its latency wait
        entered.set()
        release.wait(30)

    sim.sleep = hold
    sim.faults = FaultConfig(max_connections=1, retry_after=3, latency=1.0)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(archive.collections()))
    first.start()
    assert entered.wait(30)
    with pytest.raises(RateLimited) as info:
        make_client(archive_server.base_url, attempts=1).collections()
    assert info.value.retry_after == 3.0
    release.set()
    first.join(30)
    assert len(results) == 1 and results[0]  # the request holding the slot succeeded


def test_connection_refused_is_unavailable(make_client: MakeClient) -> None:
    client = make_client("http://127.0.0.1:9/nbia-api/services/v4/", attempts=2)
    with pytest.raises(ArchiveUnavailable):
        client.collections()
    with pytest.raises(ArchiveUnavailable), client.stream_series("1.2.3"):
        pass


def test_latency_and_bandwidth_use_the_injected_clock(
    archive: NbiaArchive, sim: SimArchive
) -> None:
    now = [0.0]
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    sim.clock, sim.sleep = (lambda: now[0]), fake_sleep
    sim.faults = FaultConfig(latency=0.25, bandwidth=10_000)
    uid = sim.series_uids("Sim-Lung")[-1]
    with archive.stream_series(uid) as chunks:
        size = sum(len(c) for c in chunks)
    assert waits[0] == 0.25
    assert sum(waits[1:]) == pytest.approx(size / 10_000, rel=0.05)


def test_malformed_json_is_a_protocol_error(
    make_client: MakeClient,
    archive_server: SimServer,
    sim: SimArchive,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mirror.archive.sim import api
    from mirror.archive.sim.routes import ENDPOINTS, Endpoint

    broken = Endpoint("GET", ("format",), lambda _s, _p: api.Reply(200, b"[{not json"))
    monkeypatch.setitem(ENDPOINTS, "getCollectionValues", broken)
    with pytest.raises(ArchiveProtocolError):
        make_client(archive_server.base_url).collections()


def test_hostile_entry_name_is_served_as_is(archive: NbiaArchive, sim: SimArchive) -> None:
    # The simulator can play a hostile archive; the sync task must reject such entries.
    sim.faults = FaultConfig(hostile_name_next=1)
    uid = sim.series_uids()[0]
    zf = _fetch(archive, uid)
    assert zf.namelist()[1] == "../../escaped.dcm"
    assert "../../escaped.dcm," in zf.read("md5hashes.csv").decode()
    assert _fetch(archive, uid).namelist()[1] == "1-1.dcm"  # one-shot


def test_listing_latency_grows_with_rows(archive: NbiaArchive, sim: SimArchive) -> None:
    waits: list[float] = []
    sim.sleep = waits.append
    sim.faults = FaultConfig(row_latency=0.5)
    archive.series("Sim-Lung")
    archive.series()
    assert waits == [0.5 * len(sim.series_uids("Sim-Lung")), 0.5 * len(sim.series_uids())]
