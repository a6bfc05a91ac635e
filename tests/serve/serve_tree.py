"""A small mirror for the serving tests, committed the way sync commits it (files, then
``_series.json``) and indexed by ``build_index``: three studies, native CT and MR, a native
multi-frame, JPEG 2000 and RLE multi-frames, names with ``^``; plus series that must stay
invisible (staging, attic, no sidecar, a withdrawn tombstone left out of the index)."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).parents[1] / "index"))

from index_tree import SeriesSpec, commit_series

from mirror.index.build import build_index
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store


def uid(seed: str) -> str:
    return generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=[seed])


@dataclass
class Study:
    collection: str
    patient_id: str
    patient_name: str
    date: str
    accession: str
    description: str
    uid: str = ""

    def __post_init__(self) -> None:
        self.uid = self.uid or uid(f"study/{self.patient_id}/{self.date}")


@dataclass
class SeriesDef:
    study: Study
    template: str
    number: int
    count: int = 1
    description: str = ""
    modality: str = ""
    uid: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.uid = self.uid or uid(f"series/{self.study.uid}/{self.number}")


def instance_bytes(s: SeriesDef, index: int) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(s.template))
    st = s.study
    ds.PatientID, ds.PatientName = st.patient_id, st.patient_name
    ds.StudyInstanceUID, ds.SeriesInstanceUID = st.uid, s.uid
    ds.StudyDate, ds.StudyTime = st.date, "101500"
    ds.AccessionNumber, ds.StudyDescription = st.accession, st.description
    ds.StudyID = "1"
    ds.SeriesNumber, ds.SeriesDescription = s.number, s.description
    ds.SOPInstanceUID = uid(f"{s.uid}/{index}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = index + 1
    if s.modality:
        ds.Modality = s.modality
    if "ImagePositionPatient" in ds:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 2.5 * index]
    for keyword, value in s.extra.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def spec(s: SeriesDef) -> SeriesSpec:
    modality = s.modality or str(pydicom.dcmread(get_testdata_file(s.template),
                                                 stop_before_pixels=True).Modality)
    return SeriesSpec(s.study.collection, s.study.patient_id, s.study.uid, s.uid,
                      template=s.template, slices=s.count, extra={"Modality": modality})


@dataclass
class Tree:
    studies: dict[str, Study]
    series: dict[str, SeriesDef]  # by name
    sidecars: dict[str, SeriesSidecar]  # by name
    hidden: dict[str, str]  # name -> SeriesInstanceUID that must never be served


STUDY_A = Study("TCGA-LUAD", "P-001", "Doe^John", "20200315", "ACC1", "CHEST CT")
STUDY_B = Study("LIDC-IDRI", "P-002", "Roe^Jane", "20191120", "ACC2", "BRAIN MR")
STUDY_C = Study("TCGA-LUAD", "P-003", "Smith^Anna", "20210601", "ACC3", "ABDOMEN CT")


def series_defs() -> dict[str, SeriesDef]:
    return {
        "ct": SeriesDef(STUDY_A, "CT_small.dcm", 1, count=5, description="AXIAL"),
        "mr": SeriesDef(STUDY_A, "MR_small.dcm", 2, count=2, description="T1"),
        "multiframe": SeriesDef(STUDY_B, "emri_small.dcm", 1, description="MF native"),
        "j2k": SeriesDef(STUDY_B, "emri_small_jpeg_2k_lossless.dcm", 2, description="MF J2K"),
        "rle": SeriesDef(STUDY_B, "emri_small_RLE.dcm", 3, description="MF RLE"),
        "ct_c": SeriesDef(STUDY_C, "CT_small.dcm", 1, count=3, description="AXIAL"),
    }


def commit(store: Store, s: SeriesDef) -> SeriesSidecar:
    return commit_series(store, spec(s), [instance_bytes(s, i) for i in range(s.count)])


def build_tree(store: Store) -> Tree:
    """Commit the visible series and the decoys, then build the index."""
    defs = series_defs()
    sidecars = {name: commit(store, s) for name, s in defs.items()}
    withdrawn = SeriesDef(STUDY_C, "CT_small.dcm", 9, count=1, description="WITHDRAWN")
    commit(store, withdrawn)
    staged = SeriesDef(STUDY_C, "CT_small.dcm", 7, count=1)
    attic = SeriesDef(STUDY_C, "CT_small.dcm", 8, count=1)
    uncommitted = SeriesDef(STUDY_C, "CT_small.dcm", 6, count=1)
    store.put_bytes(f".staging/run-2/{staged.uid}/1-001.dcm", instance_bytes(staged, 0))
    moved = commit(store, attic).path  # committed, then moved aside as sync --delete does
    store.move_prefix(moved + "/", f"_attic/run-1/{moved}/")
    store.put_bytes(f"TCGA-LUAD/P-003/{STUDY_C.uid}/{uncommitted.uid}/1-001.dcm",
                    instance_bytes(uncommitted, 0))
    build_index(store, exclude={withdrawn.uid})
    hidden = {"withdrawn": withdrawn.uid, "staged": staged.uid, "attic": attic.uid,
              "uncommitted": uncommitted.uid}
    studies = {"A": STUDY_A, "B": STUDY_B, "C": STUDY_C}
    return Tree(studies, defs, sidecars, hidden)
