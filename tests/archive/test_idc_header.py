"""The raw-element identity reader answers only when it read both UIDs itself, and then
agrees with pydicom; everything else goes to pydicom, whose errors decide."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from mirror.archive.idc.checks import dicom_identity
from mirror.archive.idc.header import fast_identity
from mirror.errors import WrongInstance

SERIES = "1.2.3.4.5"
SOP = "1.2.3.4.5.6.7"


def _instance(syntax: str = ExplicitVRLittleEndian, *, sequence: bool = False) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = SOP
    ds.Modality = "CT"
    if sequence:  # (0008,1140) before both UIDs' group 0020, written with undefined length
        item = Dataset()
        item.ReferencedSOPInstanceUID = "9.9.9"
        ds.ReferencedImageSequence = Sequence([item])
        ds["ReferencedImageSequence"].is_undefined_length = True
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = SERIES
    ds.PixelData = b"\0" * 64
    ds.Rows, ds.Columns, ds.BitsAllocated = 4, 8, 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = SOP
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_plain_explicit_header_is_read_without_pydicom() -> None:
    assert fast_identity(_instance()) == (SERIES, SOP)
    assert dicom_identity(io.BytesIO(_instance()), SERIES) == SOP


@pytest.mark.parametrize(
    "blob",
    [
        _instance(ImplicitVRLittleEndian),
        _instance(sequence=True),
        _instance()[:200],  # the head ends before the UIDs
        _instance()[132:],  # no preamble
    ],
    ids=["implicit", "undefined-length-sequence", "truncated", "no-preamble"],
)
def test_anything_not_plain_is_left_to_pydicom(blob: bytes) -> None:
    assert fast_identity(blob) is None


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("sequence", [False, True])
def test_identity_is_the_same_either_way(syntax: str, sequence: bool) -> None:
    blob = _instance(syntax, sequence=sequence)
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    assert dicom_identity(io.BytesIO(blob), SERIES) == ds.SOPInstanceUID == SOP
    with pytest.raises(WrongInstance, match=r"expected 9\.9"):
        dicom_identity(io.BytesIO(blob), "9.9")


def test_a_nested_uid_in_a_defined_length_sequence_is_skipped() -> None:
    """A (0020,000E) inside an item must not pass for the dataset's own."""
    blob = _instance()
    nested = struct.pack("<HH2sH", 0x0020, 0x000E, b"UI", 6) + b"6.6.6\0"
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(nested)) + nested
    seq = struct.pack("<HH2sHL", 0x0008, 0x1140, b"SQ", 0, len(item)) + item
    at = blob.index(struct.pack("<HH", 0x0020, 0x000D))  # before StudyInstanceUID
    patched = blob[:at] + seq + blob[at:]
    assert fast_identity(patched) == (SERIES, SOP)
    assert pydicom.dcmread(io.BytesIO(patched)).SeriesInstanceUID == SERIES


def test_not_dicom_is_a_wrong_instance() -> None:
    with pytest.raises(WrongInstance, match="not a readable DICOM"):
        dicom_identity(io.BytesIO(b"\0" * 128 + b"DICM" + b"garbage" * 10), SERIES)
