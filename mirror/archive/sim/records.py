"""The simulated archive's records: a series and its instances (metadata only).

They live below :mod:`mirror.archive.sim.model` so that :mod:`mirror.archive.sim.rows`
can describe them without importing the model that uses it (issue #10: no cycles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(slots=True)
class SimInstance:
    sop_uid: str
    position: int  # slice index along the normal
    instance_number: int
    acquisition_number: int = 1
    version: int = 0


@dataclass(slots=True)
class SimSeries:
    uid: str
    study_uid: str
    patient_id: str
    collection: str
    modality: str
    rows: int
    cols: int
    frame_uid: str
    series_number: int
    description: str
    body_part: str
    manufacturer: str
    study_date: date
    released: datetime
    max_submission: date
    instances: list[SimInstance] = field(default_factory=list)
    visible: bool = True
    license_name: str = "Creative Commons Attribution 4.0 International License"
    license_uri: str = "https://creativecommons.org/licenses/by/4.0/"
    site: str = "SIM"


__all__ = ["SimInstance", "SimSeries"]
