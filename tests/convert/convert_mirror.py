"""Lay out synthetic series in a destination Store the way sync commits them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom

from mirror.layout import SIDECAR_NAME, InstanceEntry, SeriesSidecar, series_path
from mirror.storage.port import Store


def commit_folder(store: Store, folder: Path, *, collection: str = "SIM-COLL", version: int = 1) -> SeriesSidecar:
    files = sorted(folder.iterdir())
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    path = series_path(
        collection=collection, patient_id=str(first.PatientID),
        study_uid=str(first.StudyInstanceUID), series_uid=str(first.SeriesInstanceUID),
    )
    entries = []
    for f in files:
        data = f.read_bytes()
        store.put_bytes(f"{path}/{f.name}", data)
        entries.append(InstanceEntry(f.name, hashlib.md5(data).hexdigest(), len(data)))
    sidecar = SeriesSidecar(
        series_uid=str(first.SeriesInstanceUID), study_uid=str(first.StudyInstanceUID),
        patient_id=str(first.PatientID), collection=collection, modality=str(first.Modality),
        path=path, instances=tuple(entries), fingerprint=(len(entries), 0, "", ""),
        series_version=version, run_id="test", synced_at="2026-01-01T00:00:00+00:00",
        tool_version="test",
    )
    store.put_bytes(f"{path}/{SIDECAR_NAME}", sidecar.to_json())
    return sidecar
