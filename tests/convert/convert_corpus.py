"""Deterministic synthetic DICOM series for the edge cases of the conversion spec (section 4.1).

Pixels are a sphere phantom plus a slice ramp, so every slice differs and results can be
checked voxel-exactly. Every function writes files into a folder and returns it.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
ROOT = "1.2.826.0.1.3680043.10.999."


def uid(*parts: object) -> str:
    return generate_uid(prefix=ROOT, entropy_srcs=[str(p) for p in parts])


def phantom(k: int, rows: int = 32, cols: int = 32, seed: int = 0) -> np.ndarray:
    """uint16 stored values in [0, 4095]: sphere + per-slice ramp + a seeded texture."""
    i, j = np.mgrid[0:rows, 0:cols]
    r = np.hypot(i - rows / 2, j - cols / 2)
    sphere = np.where(r < rows / 3, 1000 + 10 * k, 24).astype(np.int64)
    texture = (i * 7 + j * 3 + k * 11 + seed * 13) % 50
    return (sphere + texture).astype(np.uint16)


def ct_slice(
    k: int,
    *,
    series: str,
    ipp: Sequence[float],
    iop: Sequence[float] = AXIAL,
    rows: int = 32,
    cols: int = 32,
    spacing: tuple[float, float] = (0.8, 0.7),
    pixels: np.ndarray | None = None,
    modality: str = "CT",
    extra: dict[str, Any] | None = None,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop = uid(series, k, tuple(ipp), repr(extra))
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = uid("study", series)
    ds.SeriesInstanceUID = uid("series", series)
    ds.FrameOfReferenceUID = uid("for", series)
    ds.Modality = modality
    ds.Manufacturer = "SIM"
    ds.PatientID = "P1"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
    ds.PixelSpacing = [spacing[0], spacing[1]]
    ds.SliceThickness = 2.0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.RescaleType = "HU"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    arr = phantom(k, rows, cols) if pixels is None else pixels
    ds.PixelData = arr.astype("<u2").tobytes()
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    return ds


def save(folder: Path, datasets: Sequence[Dataset], *, shuffle: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(datasets)))
    if shuffle:
        random.Random(7).shuffle(order)
    for n, idx in enumerate(order):
        ds = datasets[idx]
        implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        ds.save_as(folder / f"IM{n:05d}.dcm", enforce_file_format=True, implicit_vr=implicit)
    return folder


def axial(n: int, *, series: str, z0: float = -20.0, dz: float = 2.0, **kw: Any) -> list[Dataset]:
    return [ct_slice(k, series=series, ipp=(-12.0, -11.0, z0 + dz * k), **kw) for k in range(n)]


def regular(folder: Path, n: int = 20, **kw: Any) -> Path:
    return save(folder, axial(n, series=str(folder), **kw))


def reversed_numbers(folder: Path) -> Path:
    slices = axial(20, series=str(folder))
    for k, ds in enumerate(slices):
        ds.InstanceNumber = 20 - k
    return save(folder, slices)


def missing_slice(folder: Path) -> Path:
    slices = axial(20, series=str(folder))
    del slices[7]
    return save(folder, slices)


def variable_spacing(folder: Path) -> Path:
    zs = [0, 2, 4, 6, 8, 10, 15, 20, 25, 30]
    slices = [ct_slice(k, series=str(folder), ipp=(0.0, 0.0, float(z))) for k, z in enumerate(zs)]
    return save(folder, slices)


def duplicate_identical(folder: Path) -> Path:
    slices = axial(10, series=str(folder))
    dup = copy.deepcopy(slices[4])
    dup.SOPInstanceUID = uid("dup", folder)
    dup.file_meta.MediaStorageSOPInstanceUID = dup.SOPInstanceUID
    dup.InstanceNumber = 99
    return save(folder, [*slices, dup])


def two_acquisitions(folder: Path) -> Path:
    a = axial(8, series=str(folder), extra={"AcquisitionNumber": 1})
    b = [
        ct_slice(k, series=str(folder), ipp=(-12.0, -11.0, -20.0 + 2 * k),
                 pixels=phantom(k) + 5, extra={"AcquisitionNumber": 2})
        for k in range(8)
    ]  # fmt: skip
    return save(folder, a + b)


def two_orientations(folder: Path) -> Path:
    ax = axial(10, series=str(folder))
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    cor = [
        ct_slice(100 + k, series=str(folder), ipp=(-12.0, -5.0 + 2 * k, 10.0), iop=coronal)
        for k in range(6)
    ]
    return save(folder, ax + cor)


def with_localizer(folder: Path) -> Path:
    slices = axial(10, series=str(folder))
    loc = ct_slice(
        500, series=str(folder), ipp=(-12.0, 0.0, 30.0), iop=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        rows=24, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )  # fmt: skip
    return save(folder, [*slices, loc])


def gantry_tilt(folder: Path, degrees: float = 20.0, n: int = 12) -> Path:
    t = math.radians(degrees)
    iop = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
    slices = [
        ct_slice(k, series=str(folder), ipp=(-12.0, -11.0, 2.0 * k), iop=iop,
                 extra={"GantryDetectorTilt": degrees})
        for k in range(n)
    ]  # fmt: skip
    return save(folder, slices)


def oblique(folder: Path, degrees: float = 30.0) -> Path:
    t = math.radians(degrees)
    r = (math.cos(t), math.sin(t), 0.0)
    c = (-math.sin(t), math.cos(t), 0.0)
    n = np.cross(r, c)
    slices = [
        ct_slice(k, series=str(folder), ipp=tuple(np.array([3.0, -4.0, 5.0]) + 2.5 * k * n),
                 iop=(*r, *c), modality="MR")
        for k in range(10)
    ]  # fmt: skip
    return save(folder, slices)


def pet_per_slice(folder: Path) -> Path:
    slices = axial(10, series=str(folder), modality="PT")
    for k, ds in enumerate(slices):
        ds.RescaleSlope = f"{0.5 + 0.1 * k:.2f}"
        ds.RescaleIntercept = 0
        ds.Units = "BQML"
    return save(folder, slices)


def temporal(folder: Path, phases: int = 3, n: int = 8) -> Path:
    out = []
    for p in range(phases):
        for k in range(n):
            out.append(ct_slice(
                k + 100 * p, series=str(folder), ipp=(-12.0, -11.0, -20.0 + 2.0 * k),
                modality="MR", pixels=phantom(k, seed=p),
                extra={"TemporalPositionIdentifier": p + 1},
            ))  # fmt: skip
    return save(folder, out)


def multi_echo(folder: Path) -> Path:
    out = []
    for echo in (1, 2):
        for k in range(6):
            out.append(ct_slice(
                k + 100 * echo, series=str(folder), ipp=(0.0, 0.0, 3.0 * k), modality="MR",
                pixels=phantom(k, seed=echo), extra={"EchoNumbers": echo},
            ))  # fmt: skip
    return save(folder, out)


def compressed(folder: Path, syntax: str, every: int = 1, n: int = 12) -> Path:
    slices = axial(n, series=str(folder))
    for k, ds in enumerate(slices):
        if k % every == 0:
            ds.compress(syntax)
    return save(folder, slices)


def implicit(folder: Path) -> Path:
    slices = axial(8, series=str(folder))
    for ds in slices:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return save(folder, slices)
