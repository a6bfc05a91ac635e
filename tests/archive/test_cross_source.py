"""Cross-source digests over real HTTP: NBIA's md5hashes.csv vs the MD5s of IDC's objects,
for series both sources hold. Identical bytes compare equal; a series NBIA changed after the
IDC release shows exactly the changed instance on each side."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.archive.crosscheck import compare_series
from mirror.archive.nbia import NbiaArchive
from mirror.archive.sim import SimArchive, serve_archive
from mirror.errors import IntegrityError
from tests.archive.idc_support import IdcWorld, idc_world


@pytest.fixture
def both(
    sim: SimArchive, moto_endpoint: str, tmp_path: Path
) -> Iterator[tuple[NbiaArchive, IdcWorld]]:
    with serve_archive(sim) as server, idc_world(sim, moto_endpoint, tmp_path) as world:
        nbia = NbiaArchive(server.base_url, sleep=lambda _s: None)
        yield nbia, world
        nbia.close()


def _nbia_md5s(nbia: NbiaArchive, uid: str) -> list[str]:
    with nbia.stream_series(uid) as chunks:
        zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    rows = zf.read("md5hashes.csv").decode().splitlines()[1:]
    return [row.split(",")[1] for row in rows]


def _idc_md5s(world: IdcWorld, uid: str) -> list[str]:
    archive = world.archive()
    series = archive.idc_series(series_uid=uid)[0]
    return [i.md5 for i in archive.fetch(series, world.tmp / "x" / uid).instances]


def test_same_bytes_compare_identical(both: tuple[NbiaArchive, IdcWorld], sim: SimArchive) -> None:
    nbia, world = both
    for uid in sim.series_uids("Sim-Brain"):
        diff = compare_series(uid, _nbia_md5s(nbia, uid), _idc_md5s(world, uid))
        assert diff.identical and diff.shared == len(sim.true_md5s(uid))


def test_a_change_on_one_side_is_reported(
    both: tuple[NbiaArchive, IdcWorld], sim: SimArchive
) -> None:
    nbia, world = both
    uid = sim.series_uids("Sim-Lung")[0]
    old = sim.true_md5(uid, 0)
    sim.replace_instance(uid, 0)  # NBIA serves it now; IDC's release still holds the old bytes
    diff = compare_series(uid, _nbia_md5s(nbia, uid), _idc_md5s(world, uid))
    assert diff.only_nbia == (sim.true_md5(uid, 0),)
    assert diff.only_idc == (old,)
    assert diff.shared == len(sim.true_md5s(uid)) - 1 and not diff.identical


def test_unpadded_nbia_hex_is_normalised_and_garbage_refused() -> None:
    digest = "0" + "a" * 31
    assert compare_series("1.2", [digest.lstrip("0")], [digest]).identical
    with pytest.raises(IntegrityError):
        compare_series("1.2", ["not-hex"], [digest])


def test_listing_alone_gives_the_digests_where_etags_are_md5s(
    both: tuple[NbiaArchive, IdcWorld], sim: SimArchive
) -> None:
    nbia, world = both
    uid = sim.series_uids("Sim-Lung")[0]
    archive = world.archive()
    series = archive.idc_series(series_uid=uid)[0]
    keys = world.idc.object_keys(uid)
    world.faults.multipart_etag.add(keys[0])
    digests = archive.listed_digests(series)
    assert digests[keys[0].split("/", 1)[1]] is None  # a multipart ETag is no MD5
    known = [d for d in digests.values() if d is not None]
    assert len(known) == len(keys) - 1
    diff = compare_series(uid, _nbia_md5s(nbia, uid), known)
    assert diff.only_idc == () and len(diff.only_nbia) == 1  # the one IDC could not vouch for
    assert [p for p in world.faults.requests if "list-type" not in p] == []  # no GET at all
