"""What the simulated archive says about its catalogue: v4 rows and zip entry names.

Rows follow the v4 column order of the NBIA source; ``None`` values are dropped because
the real server omits null columns rather than sending ``null``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from mirror.archive.sim.records import SimInstance, SimSeries

Row = dict[str, Any]


class FileSizes(Protocol):
    """The one thing a row needs from the archive model (kept narrow: no import of it)."""

    def file_size(self, uid: str) -> int: ...


def mdy(value: date) -> str:
    """v4 date form ``MM-DD-YYYY``."""
    return value.strftime("%m-%d-%Y")


def _compact(row: Row) -> Row:
    return {k: v for k, v in row.items() if v is not None}


def series_row(sim: FileSizes, s: SimSeries) -> Row:
    """One v4 ``getSeries`` / ``getUpdatedSeries`` row."""
    return _compact(
        {
            "SeriesInstanceUID": s.uid,
            "StudyInstanceUID": s.study_uid,
            "Modality": s.modality,
            "ProtocolName": None,
            "SeriesDate": mdy(s.study_date),
            "SeriesDescription": s.description,
            "BodyPartExamined": s.body_part or None,
            "SeriesNumber": s.series_number,
            "AnnotationsFlag": None,
            "Collection": s.collection,
            "Site": s.site,
            "PatientID": s.patient_id,
            "PatientSex": "O",
            "PatientAge": "050Y",
            "Manufacturer": s.manufacturer,
            "ImageCount": len(s.instances),
            "MaxSubmissionTimestamp": mdy(s.max_submission),
            "LicenseName": s.license_name,
            "LicenseURI": s.license_uri,
            "DataDescriptionURI": f"https://doi.org/10.7937/SIM.{s.collection}",
            "FileSize": sim.file_size(s.uid),
            "ReleasedStatus": "Yes",
            "DateReleased": mdy(s.released.date()),
            "StudyDesc": f"{s.collection} study",
            "StudyDate": mdy(s.study_date),
            "ThirdPartyAnalysis": None,
            "Authorized": 1,
        }
    )


def patient_row(s: SimSeries) -> Row:
    return {
        "PatientId": s.patient_id,
        "PatientName": f"{s.patient_id}^SIM",
        "PatientSex": "O",
        "Collection": s.collection,
        "Phantom": "NO",
        "SpeciesCode": "337915000",
        "SpeciesDescription": "Homo sapiens",
        "Authorized": 1,
    }


def study_row(s: SimSeries, series_count: int) -> Row:
    return {
        "StudyInstanceUID": s.study_uid,
        "StudyDate": mdy(s.study_date),
        "StudyDescription": f"{s.collection} study",
        "StudyID": "1",
        "PatientAge": "050Y",
        "PatientID": s.patient_id,
        "PatientName": f"{s.patient_id}^SIM",
        "PatientSex": "O",
        "Collection": s.collection,
        "SeriesCount": series_count,
        "Authorized": 1,
    }


def default_names(count: int) -> list[str]:
    """``00000001.dcm``...: a counter over database order."""
    return [f"{i:08d}.dcm" for i in range(1, count + 1)]


def new_file_names(instances: Sequence[SimInstance]) -> dict[int, str]:
    """``NewFileNames=Yes`` names by database index (NBIA ``getImage`` algorithm, §5.11).

    Images sort by InstanceNumber (stable). The acquisition part counts changes of
    AcquisitionNumber; the instance part restarts after each change. Widths come from the
    number of changes across the whole sorted list, exactly as the server computes them.
    """
    order = sorted(range(len(instances)), key=lambda i: instances[i].instance_number)
    acqs = [instances[i].acquisition_number for i in order]
    nums = [instances[i].instance_number for i in order]
    acq_changes = sum(1 for a, b in itertools.pairwise(acqs) if a != b)
    num_changes = sum(1 for a, b in itertools.pairwise(nums) if a != b)
    acq_width, ins_width = len(str(acq_changes + 1)), len(str(num_changes + 1))
    names: dict[int, str] = {}
    acc_part, ins_part, previous = 1, 0, acqs[0] if acqs else 0
    for db_index, acq in zip(order, acqs, strict=True):
        if acq != previous:
            acc_part, ins_part, previous = acc_part + 1, 0, acq
        ins_part += 1
        names[db_index] = f"{acc_part:0{acq_width}d}-{ins_part:0{ins_width}d}.dcm"
    return names


def license_text(s: SimSeries) -> str:
    return (
        f"License Information. The {s.collection} collection is distributed under the "
        f"{s.license_name} at {s.license_uri} By downloading the data, you agree to abide by "
        "terms of this license.\n"
    )
