"""Real DICOM files shipped by pydicom and pydicom-data (spec sections 4.2, 4.3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import convert_corpus as cc
import numpy as np
import pydicom
import pytest
import zarr
from convert_checks import check_store
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLosslessSV1

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _folder(tmp_path: Path, name: str, *files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, f in enumerate(files):
        src = get_testdata_file(f)
        assert src is not None, f"test file {f} not installed"
        shutil.copy(src, folder / f"{i:02d}_{Path(f).name}{'' if f.endswith('.dcm') else '.dcm'}")
    return folder


def _array(store: Path, path: str = "s0") -> np.ndarray:
    return zarr.open_array(str(store / path), mode="r")[...]


MR_FAMILY = [
    "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
]  # fmt: skip
EMRI_FAMILY = [
    "emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm",
]  # fmt: skip


@pytest.mark.parametrize("family", [MR_FAMILY, EMRI_FAMILY, ["693_UNCR.dcm", "693_J2KR.dcm"]])
def test_same_image_in_every_transfer_syntax_gives_the_same_array(tmp_path, convert, family):
    arrays = []
    for i, name in enumerate(family):
        folder = _folder(tmp_path, f"case{i}", name)
        store, outcome = convert(folder)
        assert [s.status for s in outcome.stacks] == ["written"]
        check_store(store, folder)
        arrays.append(_array(store))
    for other in arrays[1:]:
        np.testing.assert_array_equal(arrays[0], other)
    assert arrays[0].dtype.byteorder in ("=", "<", "|")


def test_ct_small_is_int16_hu(tmp_path, convert):
    store, outcome = convert(_folder(tmp_path, "ct", "CT_small.dcm"))
    assert outcome.stacks[0].dtype == "int16"  # signed 16-bit stored, but the values fit
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    np.testing.assert_array_equal(_array(store)[0], ds.pixel_array.astype(np.int32) - 1024)


def test_values_beyond_int16_restart_the_stack_as_int32(tmp_path, convert):
    slices = cc.axial(4, series="wide")
    for ds in slices:
        arr = cc.phantom(0).astype(np.int16)
        arr[0, 0] = -32768  # -32768 - 1024 does not fit int16
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
        ds.PixelData = arr.astype("<i2").tobytes()
    folder = cc.save(tmp_path / "wide", slices)
    store, outcome = convert(folder)
    assert outcome.stacks[0].dtype == "int32"
    check_store(store, folder)
    assert _array(store)[0, 0, 0] == -33792


def test_rtdose_frames_sit_at_grid_frame_offsets_in_gray(tmp_path, convert):
    folder = _folder(tmp_path, "dose", "rtdose.dcm")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert outcome.stacks[0].shape == (15, 10, 10) and outcome.stacks[0].dtype == "float32"
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    affine = np.asarray(zarr.open_group(str(store), mode="r").attrs["dicom"]["affine_lps"])
    ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
    for k, offset in enumerate(ds.GridFrameOffsetVector):
        expected_ipp = ipp + np.array([0.0, 0.0, float(offset)])
        assert affine @ [k, 0, 0, 1] == pytest.approx([*expected_ipp, 1.0], abs=1e-3)
    expected = (ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)).astype(np.float32)
    np.testing.assert_array_equal(_array(store), expected)


def test_enhanced_ct_uses_functional_groups(tmp_path, convert):
    folder = _folder(tmp_path, "ect", "eCT_Supplemental.dcm")
    store, _ = convert(folder)
    check_store(store, folder)
    ds = pydicom.dcmread(get_testdata_file("eCT_Supplemental.dcm"), stop_before_pixels=True)
    positions = [
        np.asarray(f.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    dicom = zarr.open_group(str(store), mode="r").attrs["dicom"]
    affine = np.asarray(dicom["affine_lps"])
    mapped = [affine @ [k, 0, 0, 1] for k in range(2)]
    normal = np.cross([-1.0, 0, 0], [0, 1.0, 0])
    assert sorted(float(p @ normal) for p in positions) == pytest.approx([float(m[:3] @ normal) for m in mapped])
    assert dicom["value_mapping"]["RescaleType"] == "US"


def test_segmentation_frames_are_uint8_labels(tmp_path, convert):
    folder = _folder(tmp_path, "seg", "liver.dcm")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert outcome.stacks[0].dtype == "uint8"
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["ome"]["multiscales"][0]["type"] == "nearest"


def test_cr_monochrome1_is_a_2d_image_with_values_kept(tmp_path, convert):
    folder = _folder(tmp_path, "cr", "dicomdirtests/77654033/CR1/6154")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert outcome.stacks[0].role == "image2d" and outcome.stacks[0].axes == ("y", "x")
    dicom = zarr.open_group(str(store), mode="r").attrs["dicom"]
    assert dicom["photometric"] == {"input": "MONOCHROME1", "output": "MONOCHROME1", "display_inverted": True}
    assert dicom["pixel_spacing_source"] == "ImagerPixelSpacing"
    ds = pydicom.dcmread(next(folder.iterdir()))
    expected = (ds.pixel_array * 0.684 + 200).astype(np.float32)  # not inverted
    np.testing.assert_array_equal(_array(store), expected)


def test_rgb_gets_a_channel_axis_before_space(tmp_path, convert):
    folder = _folder(tmp_path, "us", "examples_rgb_color.dcm")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert outcome.stacks[0].axes == ("c", "y", "x") and outcome.stacks[0].shape == (3, 240, 320)
    ds = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm"))
    np.testing.assert_array_equal(_array(store), np.moveaxis(ds.pixel_array, -1, 0))


def test_multiframe_without_geometry_is_a_time_series_of_images(tmp_path, convert):
    folder = _folder(tmp_path, "emri", "emri_small.dcm")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert outcome.stacks[0].axes == ("t", "y", "x") and outcome.stacks[0].shape == (10, 64, 64)


def test_non_image_objects_are_skipped_with_a_reason(tmp_path, convert):
    folder = _folder(tmp_path, "mixed", "rtstruct.dcm", "test-SR.dcm", "MR_small.dcm")
    store, outcome = convert(folder)
    reasons = sorted(s.reason for s in outcome.skipped)
    assert reasons == ["non-image object: RTSTRUCT", "non-image object: SR"]
    dicom = zarr.open_group(str(store), mode="r").attrs["dicom"]
    assert len(dicom["skipped_instances"]) == 2
    assert [s.status for s in outcome.stacks] == ["written"]


def test_truncated_instance_quarantines_only_its_stack(tmp_path, convert):
    folder = cc.two_orientations(tmp_path / "orient")
    broken = next(p for p in sorted(folder.iterdir()) if pydicom.dcmread(p).ImageOrientationPatient[5] == 0)
    ds = pydicom.dcmread(broken)
    ds.PixelData = ds.PixelData[:-100]
    ds.save_as(broken)
    store, outcome = convert(folder)
    statuses = [(s.status, s.role, s.reason) for s in outcome.stacks]
    assert statuses == [("quarantined", "volume", "decode_failed"), ("written", "volume", "")]
    assert outcome.stacks[0].sop_uid == ds.SOPInstanceUID
    root = zarr.open_group(str(store), mode="r")
    assert "s0" in root  # the coronal stack took the root; nothing of the broken one remains
    assert root["s0"].shape == (6, 32, 32)
    assert root.attrs["dicom"]["stacks"][0]["reason"] == "decode_failed"


@pytest.mark.skipif(get_decoder(JPEGLosslessSV1).is_available, reason="jpeg extra installed")
def test_missing_gpl_jpeg_decoder_is_a_clear_quarantine_reason(tmp_path, convert):
    store, outcome = convert(_folder(tmp_path, "jpegll", "JPEG-LL.dcm"))
    (stack,) = outcome.stacks
    assert stack.status == "quarantined"
    assert stack.reason == f"decoder_missing:{JPEGLosslessSV1}"
    assert "tcia-mirror[jpeg]" in stack.detail
    assert "ome" not in zarr.open_group(str(store), mode="r").attrs


def test_file_without_meta_decodes_with_the_parsed_encoding(tmp_path, convert):
    folder = _folder(tmp_path, "pal", "OT-PAL-8-face.dcm", "no_meta.dcm")
    store, outcome = convert(folder)
    check_store(store, folder)
    assert [(s.status, s.role, s.shape) for s in outcome.stacks] == [("written", "image2d", (480, 640))]
    assert [s.reason for s in outcome.skipped] == ["no pixel grid (Rows/Columns missing)"]
    # PALETTE COLOR: the indices are stored as they are
    assert zarr.open_group(str(store), mode="r").attrs["dicom"]["photometric"]["input"] == "PALETTE COLOR"
