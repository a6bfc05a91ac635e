"""Deterministic DICOM generation: the fast patched header equals a full pydicom encode."""

from __future__ import annotations

import dataclasses
import io
import random
from datetime import date

import numpy as np
import pydicom
import pytest

from mirror.archive.sim.dicomgen import (
    InstanceSpec,
    encode_header,
    header_bytes,
    instance_bytes,
    instance_size,
    make_uid,
    pixels,
)

BASE = InstanceSpec(
    seed=0, collection="C", patient_id="P1", study_uid=make_uid(1), series_uid=make_uid(2),
    sop_uid=make_uid(3), frame_uid=make_uid(4), modality="CT", index=0, version=0,
    instance_number=1, acquisition_number=1, rows=16, cols=24, series_number=3,
    series_description="d", body_part="CHEST", manufacturer="SIM", study_date=date(2020, 1, 2),
)  # fmt: skip


@pytest.mark.parametrize("modality", ["CT", "MR", "PT", "MG", "RTSTRUCT", "SEG"])
def test_patched_header_equals_full_encode(modality: str) -> None:
    rng = random.Random(modality)
    for i in range(25):
        spec = dataclasses.replace(
            BASE,
            modality=modality,
            index=rng.randint(0, 5000),
            version=rng.randint(0, 99),
            instance_number=rng.randint(1, 99_999),
            acquisition_number=rng.randint(0, 999),
            sop_uid=make_uid(modality, i),
        )
        assert header_bytes(spec) == encode_header(spec)
        assert instance_size(spec) == len(instance_bytes(spec))


def test_uids_are_valid_and_fixed_width() -> None:
    uids = {make_uid("x", i) for i in range(500)}
    assert len(uids) == 500
    for uid in uids:
        assert len(uid) == 43 and uid.startswith("2.25.") and uid[5] != "0"


def test_instance_is_readable_and_geometry_steps_along_the_normal() -> None:
    mr = [
        pydicom.dcmread(
            io.BytesIO(instance_bytes(dataclasses.replace(BASE, modality="MR", index=i)))
        )
        for i in range(3)
    ]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in mr])
    row, col = (
        np.array(mr[0].ImageOrientationPatient[:3], float),
        np.array(mr[0].ImageOrientationPatient[3:], float),
    )
    normal = np.cross(row, col)
    steps = np.diff(positions @ normal)
    assert np.allclose(steps, float(mr[0].SliceThickness))
    assert mr[0].pixel_array.shape == (16, 24) and mr[0].InstanceNumber == 1


def test_pixels_are_structured_not_noise() -> None:
    image = pixels(dataclasses.replace(BASE, rows=64, cols=64)).astype(float)
    # Neighbouring pixels are strongly correlated (smooth anatomy + small noise).
    assert np.corrcoef(image[:, :-1].ravel(), image[:, 1:].ravel())[0, 1] > 0.8
    assert np.array_equal(pixels(BASE), pixels(BASE))
    assert not np.array_equal(pixels(BASE), pixels(dataclasses.replace(BASE, version=1)))
