"""One client shared by many threads, and shipped to other processes (as Dask does)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import zipfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import SimArchive, SimServer


def _md5s(archive: NbiaArchive, uid: str) -> list[str]:
    with archive.stream_series(uid) as chunks:
        zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    return sorted(hashlib.md5(zf.read(n)).hexdigest() for n in zf.namelist() if n.endswith(".dcm"))


def test_threads_share_one_client(archive: NbiaArchive, sim: SimArchive) -> None:
    extra = [
        sim.add_series("Many", patient_id=f"M{i}", n_instances=3, rows=16, cols=16)
        for i in range(10)
    ]
    uids = sim.series_uids() * 3
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda u: (u, _md5s(archive, u)), uids))
    assert len(results) == len(uids) and {u for u, _ in results} >= set(extra)
    for uid, md5s in results:
        assert md5s == sorted(sim.true_md5s(uid))


def _remote_listing_and_download(archive: NbiaArchive) -> tuple[int, list[str]]:
    uid = archive.series("Sim-Lung")[0].series_uid
    return len(archive.series()), _md5s(archive, uid)


@pytest.mark.slow
def test_client_pickles_into_another_process(archive: NbiaArchive, sim: SimArchive) -> None:
    archive.collections()  # the parent's pool is open; the child must build its own
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        count, md5s = pool.submit(_remote_listing_and_download, archive).result(timeout=120)
    assert count == len(sim.series_uids())
    assert md5s in [sorted(sim.true_md5s(u)) for u in sim.series_uids("Sim-Lung")]


def test_archive_server_fixture_is_loopback(archive_server: SimServer) -> None:
    assert archive_server.host == "127.0.0.1" and archive_server.port > 0


_INHERITED: list[NbiaArchive] = []


def _use_inherited() -> tuple[int, bool]:
    # Runs in a forked child: the archive object (and its open pool) came with the fork.
    archive = _INHERITED[0]
    inherited_pool = archive._http._client
    count = len(archive.series())
    return count, archive._http._client is not inherited_pool


@pytest.mark.slow
def test_forked_child_opens_its_own_pool(archive: NbiaArchive, sim: SimArchive) -> None:
    archive.collections()  # the parent's pool has live sockets now
    _INHERITED[:] = [archive]
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            count, fresh_pool = pool.submit(_use_inherited).result(timeout=120)
    finally:
        _INHERITED.clear()
    assert count == len(sim.series_uids()) and fresh_pool
    assert archive.collections()  # the parent's pool still works
