"""Lay out a mirror destination the way sync commits it: real DICOM files + sidecars."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from mirror.layout import InstanceEntry, SeriesSidecar, series_path
from mirror.storage.port import Store


@dataclass
class SeriesSpec:
    collection: str
    patient_id: str
    study_uid: str
    series_uid: str
    template: str = "CT_small.dcm"
    slices: int = 3
    manufacturer: str = "SIEMENS"
    version: int = 1
    extra: dict[str, object] = field(default_factory=dict)


def _uid(seed: str) -> str:
    return generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=[seed])


def make_spec(collection: str, patient: str, n: int, **kw: object) -> SeriesSpec:
    return SeriesSpec(collection, patient, _uid(f"{collection}/{patient}/study"),
                      _uid(f"{collection}/{patient}/{n}/{kw.get('version', 1)}"), **kw)  # type: ignore[arg-type]


def slice_bytes(spec: SeriesSpec, index: int) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(spec.template))
    ds.PatientID = spec.patient_id
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = spec.series_uid
    ds.SOPInstanceUID = _uid(f"{spec.series_uid}/{index}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = index + 1
    ds.Manufacturer = spec.manufacturer
    if "ImagePositionPatient" in ds:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * index]
        ds.SliceLocation = z + 2.5 * index
    for keyword, value in spec.extra.items():
        setattr(ds, keyword, value)
    if spec.extra.get("Modality") == "PT":
        item = Dataset()
        item.Radiopharmaceutical = "Fluorodeoxyglucose"
        item.RadionuclideTotalDose = "370000000"
        item.RadionuclideHalfLife = "6586.2"
        item.RadiopharmaceuticalStartTime = "101500.00"
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def commit_series(store: Store, spec: SeriesSpec, files: list[bytes] | None = None) -> SeriesSidecar:
    """Write the instance files, then the sidecar last, as sync does."""
    modality = str(spec.extra.get("Modality") or ("CT" if "CT" in spec.template else "MR"))
    path = series_path(collection=spec.collection, patient_id=spec.patient_id,
                       study_uid=spec.study_uid, series_uid=spec.series_uid)
    blobs = files if files is not None else [slice_bytes(spec, i) for i in range(spec.slices)]
    entries = []
    for i, blob in enumerate(blobs):
        name = f"1-{i + 1:03d}.dcm"
        store.put_bytes(f"{path}/{name}", blob)
        entries.append(InstanceEntry(name, hashlib.md5(blob).hexdigest(), len(blob)))
    sidecar = SeriesSidecar(
        series_uid=spec.series_uid, study_uid=spec.study_uid, patient_id=spec.patient_id,
        collection=spec.collection, modality=modality, path=path, instances=tuple(entries),
        fingerprint=(len(blobs), sum(e.size for e in entries), "", ""),
        series_version=spec.version, run_id="run-1", synced_at="2026-11-22T04:00:00+00:00",
        tool_version="test", license_name="CC BY 4.0")
    store.put_bytes(f"{path}/_series.json", sidecar.to_json())
    return sidecar
