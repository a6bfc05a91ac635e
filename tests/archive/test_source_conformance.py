"""One contract, both sources: NBIA (the simulator over its REST API) and IDC (the same
series published to a bucket on moto, listed from the release's Parquet).

Both adapters are built from one populated :class:`SimArchive`, so every assertion compares
a source with the same truth. Both implement the whole source port: the listing half and
``fetch_series`` (a series staged as checked instance files) plus ``listed_md5s``. A new
source joins by adding a factory to ``SOURCES``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from mirror.archive.idc import IdcArchive
from mirror.archive.nbia import NbiaArchive
from mirror.archive.port import Archive, FetchLimits, FetchMeter
from mirror.archive.port import Source as SourcePort
from mirror.archive.sim import SimArchive, serve_archive
from tests.archive.idc_support import idc_world


@dataclass
class Source:
    name: str
    port: Archive
    fetch_md5s: Callable[[str], list[str]]  # series UID -> MD5 of every instance served
    republish: Callable[[], Archive]  # after a change to the simulator: the port that sees it


def _no_sleep(_seconds: float) -> None:
    """Backoff waits are skipped (module level so the adapter stays picklable)."""


@contextmanager
def _nbia(sim: SimArchive, _endpoint: str, _tmp: Path) -> Iterator[Source]:
    with serve_archive(sim) as server:
        port = NbiaArchive(server.base_url, sleep=_no_sleep)

        def fetch(uid: str) -> list[str]:
            with port.stream_series(uid) as chunks:
                zf = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
            return [
                hashlib.md5(zf.read(n)).hexdigest() for n in zf.namelist() if n.endswith(".dcm")
            ]

        yield Source("nbia", port, fetch, lambda: port)
        port.close()


@contextmanager
def _idc(sim: SimArchive, endpoint: str, tmp: Path) -> Iterator[Source]:
    with idc_world(sim, endpoint, tmp) as world:
        current: list[IdcArchive] = [world.archive()]

        def fetch(uid: str) -> list[str]:
            series = current[0].idc_series(series_uid=uid)[0]
            return [i.md5 for i in current[0].fetch(series, tmp / "staging" / uid).instances]

        def republish() -> Archive:
            world.publish()
            current[0] = world.archive()
            return current[0]

        yield Source("idc", current[0], fetch, republish)


SOURCES: dict[str, Callable[[SimArchive, str, Path], AbstractContextManager[Source]]] = {
    "nbia": _nbia,
    "idc": _idc,
}


@pytest.fixture(params=sorted(SOURCES))
def source(
    request: pytest.FixtureRequest, sim: SimArchive, moto_endpoint: str, tmp_path: Path
) -> Iterator[Source]:
    with SOURCES[request.param](sim, moto_endpoint, tmp_path) as built:
        yield built


def test_is_an_archive_on_loopback(source: Source) -> None:
    assert isinstance(source.port, Archive)
    assert source.port.url.startswith("http://127.0.0.1:")


def test_collections(source: Source) -> None:
    assert sorted(c.name for c in source.port.collections()) == ["Sim-Brain", "Sim-Lung"]


def test_series_listing_matches_the_truth(source: Source, sim: SimArchive) -> None:
    listed = {r.series_uid: r for r in source.port.series("Sim-Lung")}
    assert sorted(listed) == sorted(sim.series_uids("Sim-Lung"))
    for uid, record in listed.items():
        truth = sim.record(uid)
        assert (record.study_uid, record.patient_id, record.collection, record.modality) == (
            truth.study_uid, truth.patient_id, truth.collection, truth.modality,
        )  # fmt: skip
        assert record.image_count == len(sim.true_md5s(uid))
        assert record.file_size == sim.file_size(uid)


def test_series_filters(source: Source, sim: SimArchive) -> None:
    uid = sim.series_uids("Sim-Lung")[0]
    truth = sim.record(uid)
    assert [r.series_uid for r in source.port.series(series_uid=uid)] == [uid]
    by_patient = source.port.series("sim-lung", patient_id=truth.patient_id.lower())
    assert uid in {r.series_uid for r in by_patient}
    assert all(r.patient_id == truth.patient_id for r in by_patient)
    assert {r.modality for r in source.port.series(modality="pt")} == {"PT"}


def test_unknown_collection_is_empty_not_an_error(source: Source) -> None:
    assert source.port.series("No-Such-Collection") == []


def test_patients_and_studies(source: Source) -> None:
    assert sorted(p.patient_id for p in source.port.patients("Sim-Lung")) == ["SL-001", "SL-002"]
    studies = source.port.studies("Sim-Lung", "SL-001")
    assert len(studies) == 1 and studies[0].series_count == 2


def test_served_bytes_are_the_instances(source: Source, sim: SimArchive) -> None:
    for uid in sim.series_uids("Sim-Brain"):
        assert sorted(source.fetch_md5s(uid)) == sorted(sim.true_md5s(uid))


def test_withdrawn_series_leaves_the_listing(source: Source, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.withdraw_series(uid)
    port = source.republish()
    assert uid not in {r.series_uid for r in port.series()}


def test_changed_series_is_listed_as_updated(source: Source, sim: SimArchive) -> None:
    uid = sim.series_uids()[0]
    sim.today += timedelta(days=10)
    sim.replace_instance(uid, 0)
    port = source.republish()
    assert [r.series_uid for r in port.updated_series(sim.today - timedelta(days=1))] == [uid]
    assert sorted(source.fetch_md5s(uid)) == sorted(sim.true_md5s(uid))


def test_adapter_pickles_and_works_after(source: Source, sim: SimArchive) -> None:
    source.port.collections()
    clone = pickle.loads(pickle.dumps(source.port))
    assert sorted(r.series_uid for r in clone.series()) == sorted(sim.series_uids())
    getattr(clone, "close", lambda: None)()


# --- the fetch half of the port (what the sync engine calls) ------------------------------


def test_is_a_source(source: Source) -> None:
    assert isinstance(source.port, SourcePort)


def test_fetch_series_stages_every_instance_checked(
    source: Source, sim: SimArchive, tmp_path: Path
) -> None:
    port = source.port
    assert isinstance(port, SourcePort)
    for record in port.series("Sim-Lung"):
        dest = tmp_path / "stage" / record.series_uid
        dest.mkdir(parents=True)
        meter = FetchMeter()
        staged = port.fetch_series(record, str(dest), FetchLimits(), meter)
        assert staged.directory == str(dest)
        names = {i.name for i in staged.instances}
        assert {p.name for p in dest.iterdir()} == names | set(staged.extra_files)
        for entry in staged.instances:
            data = (dest / entry.name).read_bytes()
            assert (len(data), hashlib.md5(data).hexdigest()) == (entry.size, entry.md5)
        assert sorted(i.md5 for i in staged.instances) == sorted(sim.true_md5s(record.series_uid))
        assert meter.received > 0
        for _name, outcomes in staged.checks:
            assert "failed" not in dict(outcomes).values()


def test_listed_md5s_are_the_truth_or_unknown(source: Source, sim: SimArchive) -> None:
    port = source.port
    assert isinstance(port, SourcePort)
    for record in port.series("Sim-Brain"):
        listed = port.listed_md5s(record)
        assert listed is None or sorted(listed) == sorted(sim.true_md5s(record.series_uid))
