"""The Archive port contract, run against every adapter (today: NbiaArchive over the simulator).

A future adapter (for example an IDC bucket reader) joins by adding a factory to
``ADAPTERS`` that turns a populated :class:`SimArchive` into an ``Archive``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from mirror.archive.nbia import NbiaArchive
from mirror.archive.port import Archive
from mirror.archive.sim import SimArchive, SimServer, serve_archive
from mirror.errors import AccessDenied
from mirror.layout import normalize_md5

AdapterFactory = Callable[[SimServer], Archive]


def _no_sleep(_seconds: float) -> None:
    """Backoff waits are skipped (module level so the adapter stays picklable)."""


ADAPTERS: dict[str, AdapterFactory] = {
    "nbia": lambda server: NbiaArchive(server.base_url, sleep=_no_sleep),
}


@pytest.fixture(params=sorted(ADAPTERS))
def port(request: pytest.FixtureRequest, sim: SimArchive) -> Iterator[Archive]:
    with serve_archive(sim) as server:
        adapter = ADAPTERS[request.param](server)
        yield adapter
        close = getattr(adapter, "close", None)
        if close is not None:
            close()


def _download(port: Archive, uid: str) -> zipfile.ZipFile:
    with port.stream_series(uid) as chunks:
        return zipfile.ZipFile(io.BytesIO(b"".join(chunks)))


def test_is_an_archive(port: Archive) -> None:
    assert isinstance(port, Archive)
    assert port.url.startswith("http://127.0.0.1:")


def test_collections_are_the_visible_ones(port: Archive, sim: SimArchive) -> None:
    assert sorted(c.name for c in port.collections()) == ["Sim-Brain", "Sim-Lung"]


def test_series_listing_matches_the_archive(port: Archive, sim: SimArchive) -> None:
    listed = {r.series_uid: r for r in port.series("Sim-Lung")}
    assert sorted(listed) == sorted(sim.series_uids("Sim-Lung"))
    for uid, record in listed.items():
        assert record == sim.record(uid)
        assert record.image_count == len(sim.true_md5s(uid))
        assert record.date_released == sim.today


def test_series_filters(port: Archive, sim: SimArchive) -> None:
    uid = sim.series_uids("Sim-Lung")[0]
    record = sim.record(uid)
    assert [r.series_uid for r in port.series(series_uid=uid)] == [uid]
    by_patient = port.series("sim-lung", patient_id=record.patient_id.lower())
    assert uid in {r.series_uid for r in by_patient}
    assert all(r.patient_id == record.patient_id for r in by_patient)
    assert {r.modality for r in port.series(modality="pt")} == {"PT"}


def test_unknown_collection_is_empty_not_an_error(port: Archive) -> None:
    assert port.series("No-Such-Collection") == []


def test_patients_and_studies(port: Archive, sim: SimArchive) -> None:
    assert sorted(p.patient_id for p in port.patients("Sim-Lung")) == ["SL-001", "SL-002"]
    studies = port.studies("Sim-Lung", "SL-001")
    assert len(studies) == 1
    assert studies[0].series_count == 2
    sl001 = [sim.record(u) for u in sim.series_uids("Sim-Lung")]
    assert {r.study_uid for r in sl001 if r.patient_id == "SL-001"} == {studies[0].study_uid}


def test_updated_series_is_strictly_after_midnight(port: Archive, sim: SimArchive) -> None:
    assert len(port.updated_series(sim.today)) == len(sim.series_uids())
    assert port.updated_series(sim.today + timedelta(days=1)) == []
    uid = sim.series_uids()[0]
    sim.today += timedelta(days=10)
    sim.replace_instance(uid, 0)
    assert [r.series_uid for r in port.updated_series(sim.today)] == [uid]


def test_sop_instance_uids(port: Archive, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    assert len(port.sop_instance_uids(uid)) == len(sim.true_md5s(uid))


def test_stream_series_yields_the_archive_bytes(port: Archive, sim: SimArchive) -> None:
    for uid in sim.series_uids():
        zf = _download(port, uid)
        names = [n for n in zf.namelist() if n.endswith(".dcm")]
        assert "md5hashes.csv" in zf.namelist()
        served = sorted(hashlib.md5(zf.read(n)).hexdigest() for n in names)
        assert served == sorted(sim.true_md5s(uid))
        csv_rows = zf.read("md5hashes.csv").decode().splitlines()[1:]
        listed = {name: normalize_md5(h) for name, h in (r.split(",") for r in csv_rows)}
        assert {n: hashlib.md5(zf.read(n)).hexdigest() for n in names} == listed


def test_stream_series_withdrawn_is_access_denied(port: Archive, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.withdraw_series(uid)
    assert uid not in {r.series_uid for r in port.series()}
    with pytest.raises(AccessDenied), port.stream_series(uid) as chunks:
        b"".join(chunks)


def test_adapter_pickles_and_works_after(port: Archive, sim: SimArchive) -> None:
    port.collections()  # opens the connection pool
    clone = pickle.loads(pickle.dumps(port))
    assert sorted(r.series_uid for r in clone.series()) == sorted(sim.series_uids())
    getattr(clone, "close", lambda: None)()
