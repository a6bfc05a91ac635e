"""A simulated IDC: the NBIA simulator's series, laid out and versioned as IDC does.

:class:`IdcSim` follows a populated :class:`~mirror.archive.sim.SimArchive` (real DICOM
from ``dicomgen``; the ``tcga`` preset takes its names, UIDs and counts from
``../shared/data/tcga_catalog.parquet``). Each :meth:`IdcSim.publish` is one IDC release:

- a series new to the simulator gets a ``crdc_series_uuid`` (the catalogue's own uuid when
  it has one) and its objects are PUT under ``<uuid>/<crdc_instance_uuid>.dcm``;
- a series whose content changed gets a *new* uuid and prefix; the old prefix stays in the
  bucket and the old uuid moves to ``prior_versions_index``;
- a withdrawn series leaves ``idc_index`` for ``prior_versions_index``;

and the release's Parquet files are written to a folder, as ``idc-index-data`` ships them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.archive.idc.names import collection_id
from mirror.archive.idcsim import schema
from mirror.archive.idcsim.bucket import BucketWriter
from mirror.archive.sim.dicomgen import SECONDARY_CAPTURE, SOP_CLASSES
from mirror.archive.sim.model import SimArchive
from mirror.archive.sim.records import SimSeries

_NAMESPACE = uuid.UUID("6f1d3a52-1c1e-4c55-9d55-2a1f4e1c0a10")
_GCS = {"idc-open-data": "idc-open-data", "idc-open-data-two": "idc-open-idc1"}


@dataclass(frozen=True, slots=True)
class _Held:
    uuid: str
    init: int
    revised: int
    signature: tuple[tuple[str, int], ...]
    size: int


@dataclass(frozen=True, slots=True)
class Release:
    version: int
    index_dir: Path
    new: tuple[str, ...]
    revised: tuple[str, ...]
    removed: tuple[str, ...]


class IdcSim:
    """IDC's releases of ``sim``'s series, written to ``bucket`` through ``writer``."""

    def __init__(
        self,
        sim: SimArchive,
        writer: BucketWriter,
        *,
        first_version: int = 20,
        catalog_uuids: Mapping[str, str] | None = None,
    ) -> None:
        self.sim = sim
        self.writer = writer
        self.version = first_version - 1
        self._catalog_uuids = dict(catalog_uuids or {})
        self._held: dict[str, _Held] = {}
        self._prior: list[dict[str, Any]] = []
        self._dates: dict[int, str] = {}
        self._series_meta: dict[str, SimSeries] = {}

    @property
    def bucket(self) -> str:
        return self.writer.bucket

    def uuid_of(self, series_uid: str) -> str:
        return self._held[series_uid].uuid

    def object_keys(self, series_uid: str) -> list[str]:
        """The current version's keys, in the simulator's instance order."""
        series = self.sim.get_series(series_uid)
        if series is None:
            raise KeyError(series_uid)
        held = self._held[series_uid].uuid
        return [f"{held}/{_instance_uuid(held, i.sop_uid)}.dcm" for i in series.instances]

    def publish(self, index_dir: Path) -> Release:
        """One release: upload what is new, write the four Parquet files to ``index_dir``."""
        self.version += 1
        self._dates[self.version] = self.sim.today.isoformat()
        visible = {s.uid: s for s in self.sim.all_series()}
        new, revised = self._apply_current(visible)
        removed = self._apply_removed(visible)
        self._write(index_dir, visible)
        return Release(self.version, index_dir, tuple(new), tuple(revised), tuple(removed))

    def _apply_current(self, visible: dict[str, SimSeries]) -> tuple[list[str], list[str]]:
        new: list[str] = []
        revised: list[str] = []
        for uid, series in sorted(visible.items()):
            signature = tuple((i.sop_uid, i.version) for i in series.instances)
            held = self._held.get(uid)
            if held is not None and held.signature == signature:
                continue
            token = self._new_uuid(uid, held)
            if held is None:
                new.append(uid)
                init = self.version
            else:
                revised.append(uid)
                init = held.init
                self._prior.append(self._prior_row(series, held, self.version - 1))
            size = self._upload(series, token)
            self._held[uid] = _Held(token, init, self.version, signature, size)
            self._series_meta[uid] = series
        return new, revised

    def _apply_removed(self, visible: dict[str, SimSeries]) -> list[str]:
        removed = sorted(uid for uid in self._held if uid not in visible)
        for uid in removed:
            held = self._held.pop(uid)
            self._prior.append(self._prior_row(self._series_meta[uid], held, self.version - 1))
        return removed

    def _new_uuid(self, uid: str, held: _Held | None) -> str:
        if held is None and uid in self._catalog_uuids:
            return self._catalog_uuids[uid]
        return str(uuid.uuid5(_NAMESPACE, f"{uid}:{self.version}"))

    def _upload(self, series: SimSeries, token: str) -> int:
        total = 0
        for index, inst in enumerate(series.instances):
            data = self.sim.instance_bytes(series.uid, index)
            self.writer.put(f"{token}/{_instance_uuid(token, inst.sop_uid)}.dcm", data)
            total += len(data)
        return total

    def _prior_row(self, series: SimSeries, held: _Held, last: int) -> dict[str, Any]:
        return {
            "collection_id": collection_id(series.collection),
            "PatientID": series.patient_id,
            "SeriesInstanceUID": series.uid,
            "StudyInstanceUID": series.study_uid,
            "Modality": series.modality,
            "gcs_bucket": _GCS.get(self.bucket, self.bucket),
            "crdc_series_uuid": held.uuid,
            "series_size_MB": round(held.size / 1e6, 6),
            "series_aws_url": f"s3://{self.bucket}/{held.uuid}/*",
            "aws_bucket": self.bucket,
            "min_idc_version": held.revised,
            "max_idc_version": last,
        }

    def _index_row(self, series: SimSeries) -> dict[str, Any]:
        held = self._held[series.uid]
        image = series.modality in SOP_CLASSES and series.modality not in ("RTSTRUCT", "SEG")
        return {
            "collection_id": collection_id(series.collection),
            "analysis_result_id": None,
            "PatientID": series.patient_id,
            "SeriesInstanceUID": series.uid,
            "StudyInstanceUID": series.study_uid,
            "source_DOI": f"10.7937/SIM.{series.collection}".lower(),
            "PatientAge": "050Y",
            "PatientSex": "O",
            "StudyDate": series.study_date.isoformat(),
            "StudyDescription": f"{series.collection} study",
            "BodyPartExamined": series.body_part or None,
            "Modality": series.modality,
            "SOPClassUID": SOP_CLASSES.get(series.modality, SECONDARY_CAPTURE),
            "sop_class_name": None,
            "TransferSyntaxUID": "1.2.840.10008.1.2.1",
            "transfer_syntax_name": "Explicit VR Little Endian",
            "PhotometricInterpretation": "MONOCHROME2" if image else None,
            "PixelRepresentation": "0" if image else None,
            "Manufacturer": series.manufacturer,
            "ManufacturerModelName": None,
            "SeriesDate": series.study_date.isoformat(),
            "SeriesDescription": series.description,
            "SeriesNumber": str(series.series_number),
            "instanceCount": len(series.instances),
            "license_short_name": "CC BY 4.0",
            "series_init_idc_version": held.init,
            "series_revised_idc_version": held.revised,
            "aws_bucket": self.bucket,
            "crdc_series_uuid": held.uuid,
            "series_aws_url": f"s3://{self.bucket}/{held.uuid}/*",
            "series_size_MB": round(held.size / 1e6, 6),
        }

    def _write(self, folder: Path, visible: dict[str, SimSeries]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tag = f"{self.version}.0.0"
        rows = [self._index_row(s) for _, s in sorted(visible.items())]
        _write(folder / "idc_index.parquet", schema.IDC_INDEX, rows, tag)
        _write(
            folder / "prior_versions_index.parquet", schema.PRIOR_VERSIONS_INDEX, self._prior, tag
        )
        names = sorted({s.collection for s in self._series_meta.values()})
        subjects = {
            n: len({s.patient_id for s in visible.values() if s.collection == n}) for n in names
        }
        collections = [
            {"collection_name": n, "collection_id": collection_id(n), "subjects": subjects[n],
             "program_id": "sim"}
            for n in names
        ]  # fmt: skip
        _write(folder / "collections_index.parquet", schema.COLLECTIONS_INDEX, collections, tag)
        versions = [
            {"idc_version": v, "version_timestamp": d} for v, d in sorted(self._dates.items())
        ]
        _write(
            folder / "version_metadata_index.parquet", schema.VERSION_METADATA_INDEX, versions, tag
        )


def _instance_uuid(series_uuid: str, sop_uid: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{series_uuid}/{sop_uid}"))


def _write(
    path: Path, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]], tag: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema.arrow_schema(columns, tag))
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial, compression="zstd")
    partial.replace(path)


def catalog_uuids(path: Path) -> dict[str, str]:
    """SeriesInstanceUID -> crdc_series_uuid from a shared catalogue Parquet (real uuids)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["SeriesInstanceUID", "crdc_series_uuid"])
    return dict(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


__all__ = ["IdcSim", "Release", "catalog_uuids"]
