"""``--source auto``: each series from IDC where IDC lists it, else from NBIA.

The two listings are merged per SeriesInstanceUID (IDC wins), so a series keeps one record,
one path and one ledger row whichever source serves it; ``record.source`` says which one
and :meth:`CombinedSource.fetch_series` dispatches on it. Collections are named as NBIA
names them (``TCGA-LUAD``); an IDC-only collection keeps IDC's display name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import date

from mirror.archive.idc import IdcArchive
from mirror.archive.idc.names import collection_id
from mirror.archive.port import (
    CollectionRecord,
    FetchLimits,
    FetchMeter,
    PatientRecord,
    SeriesRecord,
    Source,
    StagedSeries,
    StudyRecord,
)


class CombinedSource:
    """IDC first, NBIA for the rest. Picklable when both sources are."""

    def __init__(self, nbia: Source, idc: IdcArchive) -> None:
        self.nbia = nbia
        self.idc = idc

    @property
    def url(self) -> str:
        return f"auto(idc={self.idc.url}, nbia={self.nbia.url})"

    @property
    def release(self) -> str:
        return self.idc.release

    def collections(self) -> list[CollectionRecord]:
        names = {collection_id(c.name): c.name for c in self.idc.collections()}
        names.update({collection_id(c.name): c.name for c in self.nbia.collections()})
        return [CollectionRecord(n) for _, n in sorted(names.items())]

    def patients(self, collection: str) -> list[PatientRecord]:
        found = {p.patient_id: p for p in self.nbia.patients(collection)}
        for p in self.idc.patients(collection):
            found.setdefault(p.patient_id, dataclasses.replace(p, collection=collection))
        return [found[k] for k in sorted(found)]

    def studies(self, collection: str, patient_id: str | None = None) -> list[StudyRecord]:
        found = {s.study_uid: s for s in self.nbia.studies(collection, patient_id)}
        for s in self.idc.studies(collection, patient_id):
            found.setdefault(s.study_uid, dataclasses.replace(s, collection=collection))
        return [found[k] for k in sorted(found)]

    def series(
        self,
        collection: str | None = None,
        *,
        patient_id: str | None = None,
        study_uid: str | None = None,
        series_uid: str | None = None,
        modality: str | None = None,
    ) -> list[SeriesRecord]:
        query = {
            "patient_id": patient_id, "study_uid": study_uid,
            "series_uid": series_uid, "modality": modality,
        }  # fmt: skip
        return merge(
            self.idc.series(collection, **query), self.nbia.series(collection, **query), collection
        )

    def updated_series(self, since: date) -> list[SeriesRecord]:
        return merge(self.idc.updated_series(since), self.nbia.updated_series(since), None)

    def sop_instance_uids(self, series_uid: str) -> list[str]:
        return self.nbia.sop_instance_uids(series_uid)

    def stream_series(self, series_uid: str) -> AbstractContextManager[Iterator[bytes]]:
        return self.nbia.stream_series(series_uid)

    def fetch_series(
        self, record: SeriesRecord, dest: str, limits: FetchLimits, meter: FetchMeter
    ) -> StagedSeries:
        return self._for(record).fetch_series(record, dest, limits, meter)

    def listed_md5s(self, record: SeriesRecord) -> list[str] | None:
        return self._for(record).listed_md5s(record)

    def _for(self, record: SeriesRecord) -> Source:
        return self.idc if record.source == "idc" else self.nbia


def merge(
    idc: list[SeriesRecord], nbia: list[SeriesRecord], collection: str | None
) -> list[SeriesRecord]:
    """IDC's records, then NBIA's for the UIDs IDC lacks; IDC records take NBIA's spelling
    of the collection so that paths and plan scopes do not depend on the source."""
    names = {collection_id(r.collection): r.collection for r in nbia}
    if collection is not None:
        names.setdefault(collection_id(collection), collection)
    taken = {r.series_uid for r in idc}
    renamed = [
        dataclasses.replace(r, collection=names.get(collection_id(r.collection), r.collection))
        for r in idc
    ]
    rest = [dataclasses.replace(r, source="nbia") for r in nbia if r.series_uid not in taken]
    return renamed + rest


__all__ = ["CombinedSource", "merge"]
