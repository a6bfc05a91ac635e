"""Spec section 4.1 edge cases, synthesised, each checked against the section 4.4 invariants."""

from __future__ import annotations

import math
from pathlib import Path

import convert_corpus as cc
import numpy as np
import pytest
import zarr
from convert_checks import check_store, written_images
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless


def _root_dicom(store: Path) -> dict:
    return zarr.open_group(str(store), mode="r").attrs["dicom"]


def test_regular_axial_is_one_int16_hu_stack(tmp_path, convert):
    store, outcome = convert(cc.regular(tmp_path / "regular"))
    check_store(store, tmp_path / "regular")
    (stack,) = outcome.stacks
    assert (stack.status, stack.shape, stack.dtype) == ("written", (20, 32, 32), "int16")
    dicom = _root_dicom(store)
    assert dicom["geometry_checks"]["regular"] is True
    assert dicom["value_mapping"]["kind"] == "rescale_int"
    assert dicom["value_mapping"]["fill_value"] == -1024
    ome = zarr.open_group(str(store), mode="r").attrs["ome"]["multiscales"][0]
    scale, translation = (t for t in ome["datasets"][0]["coordinateTransformations"])
    assert scale["scale"] == pytest.approx([2.0, 0.8, 0.7])
    # axial: the NGFF frame is LPS in (S, P, L) order, origin = lowest slice's IPP
    assert translation["translation"] == pytest.approx([-20.0, -11.0, -12.0])
    labels = [axis["orientation"]["value"] for axis in ome["axes"]]
    assert labels == ["inferior-to-superior", "anterior-to-posterior", "right-to-left"]


def test_instance_numbers_do_not_drive_the_order(tmp_path, convert):
    a, _ = convert(cc.regular(tmp_path / "regular"))
    b, _ = convert(cc.reversed_numbers(tmp_path / "reversed"))
    check_store(b, tmp_path / "reversed")
    np.testing.assert_array_equal(zarr.open_array(str(a / "s0"))[...], zarr.open_array(str(b / "s0"))[...])


def test_missing_slice_is_inserted_as_fill_and_flagged(tmp_path, convert):
    store, outcome = convert(cc.missing_slice(tmp_path / "missing"))
    check_store(store, tmp_path / "missing")
    assert outcome.stacks[0].shape == (20, 32, 32)
    checks = _root_dicom(store)["geometry_checks"]
    assert checks["missing_slice_indices"] == [7]
    assert checks["regular"] is False
    assert np.all(zarr.open_array(str(store / "s0"))[7] == -1024)
    scale = zarr.open_group(str(store), mode="r").attrs["ome"]["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"][0] == pytest.approx(2.0)


def test_variable_spacing_splits_into_regular_runs(tmp_path, convert):
    store, outcome = convert(cc.variable_spacing(tmp_path / "variable"))
    check_store(store, tmp_path / "variable")
    assert [s.shape[0] for s in outcome.stacks] == [6, 4]
    spacings = [s.spacing[0] for s in outcome.stacks]
    assert spacings == pytest.approx([2.0, 5.0])
    assert all("variable_spacing_run" in s.flags for s in outcome.stacks)


def test_identical_duplicate_is_dropped_and_listed(tmp_path, convert):
    store, outcome = convert(cc.duplicate_identical(tmp_path / "dup"))
    seen = check_store(store, tmp_path / "dup")
    assert outcome.stacks[0].shape == (10, 32, 32)
    dropped = _root_dicom(store)["dropped_instances"]
    assert len(dropped) == 1 and dropped[0]["reason"].startswith("identical duplicate of")
    assert len(seen) == 11  # ten slices + the dropped one, each accounted for once


def test_two_acquisitions_at_same_positions_become_4d(tmp_path, convert):
    store, outcome = convert(cc.two_acquisitions(tmp_path / "acq"))
    check_store(store, tmp_path / "acq")
    assert outcome.stacks[0].shape == (2, 8, 32, 32)
    assert outcome.stacks[0].axes == ("t", "z", "y", "x")
    assert _root_dicom(store)["fourth_dimension"] == {"key": "acquisition", "values": ["1", "2"]}


def test_dce_time_points_become_4d(tmp_path, convert):
    store, outcome = convert(cc.temporal(tmp_path / "dce"))
    check_store(store, tmp_path / "dce")
    assert outcome.stacks[0].shape == (3, 8, 32, 32)
    assert _root_dicom(store)["fourth_dimension"]["key"] == "temporal"


def test_multi_echo_is_split_by_echo(tmp_path, convert):
    store, outcome = convert(cc.multi_echo(tmp_path / "echo"))
    check_store(store, tmp_path / "echo")
    assert outcome.stacks[0].shape == (2, 6, 32, 32)
    assert _root_dicom(store)["fourth_dimension"]["key"] == "echo"


def test_two_orientations_give_two_stacks(tmp_path, convert):
    store, outcome = convert(cc.two_orientations(tmp_path / "orient"))
    check_store(store, tmp_path / "orient")
    assert [(s.path, s.shape[0]) for s in outcome.stacks] == [("", 10), ("stacks/1", 6)]
    coronal = zarr.open_group(str(store / "stacks" / "1"), mode="r").attrs["dicom"]
    # slices ascend along n = row x col = (0, 1, 0) for a (1,0,0 / 0,0,-1) coronal
    assert np.asarray(coronal["affine_lps"])[:3, 0] == pytest.approx([0.0, 2.0, 0.0])


def test_localizer_gets_its_own_stack(tmp_path, convert):
    store, outcome = convert(cc.with_localizer(tmp_path / "loc"))
    check_store(store, tmp_path / "loc")
    roles = [(s.role, s.shape) for s in outcome.stacks]
    assert roles == [("volume", (10, 32, 32)), ("localizer", (1, 24, 32))]
    loc = zarr.open_group(str(store / "stacks" / "1"), mode="r").attrs["dicom"]
    assert loc["geometry_checks"]["nominal_z_spacing"] is True


def test_gantry_tilt_is_measured_and_sheared(tmp_path, convert):
    store, outcome = convert(cc.gantry_tilt(tmp_path / "tilt"))
    check_store(store, tmp_path / "tilt")  # includes: every slice within 1e-3 mm of its IPP
    dicom = _root_dicom(store)
    assert dicom["geometry_checks"]["tilt_deg"] == pytest.approx(20.0, abs=1e-3)
    assert outcome.stacks[0].spacing[0] == pytest.approx(2 * math.cos(math.radians(20)), abs=1e-4)
    assert np.linalg.norm(dicom["shear_per_slice_mm"]) == pytest.approx(2 * math.sin(math.radians(20)), abs=1e-4)
    last = np.asarray(dicom["affine_lps"]) @ np.array([11, 0, 0, 1.0])
    assert last[:3] == pytest.approx([-12.0, -11.0, 22.0], abs=1e-3)


def test_oblique_rotation_is_in_the_affine(tmp_path, convert):
    store, _ = convert(cc.oblique(tmp_path / "oblique"))
    check_store(store, tmp_path / "oblique")
    axes = zarr.open_group(str(store), mode="r").attrs["ome"]["multiscales"][0]["axes"]
    assert not any("orientation" in axis for axis in axes)  # oblique: no anatomical labels
    rotation = np.asarray(_root_dicom(store)["intrinsic_to_LPS_rotation"])
    assert rotation @ rotation.T == pytest.approx(np.eye(3), abs=1e-6)
    assert rotation[:, 2] == pytest.approx([math.cos(math.radians(30)), 0.5, 0.0], abs=1e-6)


def test_pet_per_slice_slope_is_float32_exact(tmp_path, convert):
    store, outcome = convert(cc.pet_per_slice(tmp_path / "pet"))
    check_store(store, tmp_path / "pet")
    assert outcome.stacks[0].dtype == "float32"
    mapping = _root_dicom(store)["value_mapping"]
    assert mapping["per_slice_rescale"] is True
    assert mapping["slopes"][:2] == pytest.approx([0.5, 0.6])


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_and_mixed_syntaxes_give_the_same_array(tmp_path, convert, syntax):
    plain, _ = convert(cc.regular(tmp_path / "plain", n=12))
    every = 1 if syntax != RLELossless else 3
    store, _ = convert(cc.compressed(tmp_path / "packed", syntax, every=every))
    check_store(store, tmp_path / "packed")
    np.testing.assert_array_equal(zarr.open_array(str(plain / "s0"))[...], zarr.open_array(str(store / "s0"))[...])
    decoders = _root_dicom(store)["decoders"]
    assert any(d.startswith(str(syntax)) for d in decoders)


def test_implicit_vr_little_endian(tmp_path, convert):
    store, outcome = convert(cc.implicit(tmp_path / "implicit"))
    check_store(store, tmp_path / "implicit")
    assert outcome.stacks[0].shape == (8, 32, 32)


@pytest.mark.slow
def test_130_slices_cross_shard_boundaries_with_pyramid(tmp_path, convert):
    folder = cc.regular(tmp_path / "long", n=130, rows=128, cols=128)
    store, _ = convert(folder)
    check_store(store, folder)
    root = zarr.open_group(str(store), mode="r")
    s0, s1 = root["s0"], root["s1"]
    assert s0.shape == (130, 128, 128) and s1.shape == (130, 64, 64)
    assert s0.shards == (64, 128, 128) and s0.chunks == (64, 64, 64)
    full = s0[...].astype(np.int64)
    total = full[:, ::2, ::2] + full[:, 1::2, ::2] + full[:, ::2, 1::2] + full[:, 1::2, 1::2]
    np.testing.assert_array_equal(s1[...], ((total + 2) // 4).astype(np.int16))
    datasets = root.attrs["ome"]["multiscales"][0]["datasets"]
    assert datasets[1]["coordinateTransformations"][0]["scale"] == pytest.approx([2.0, 1.6, 1.4])
    assert datasets[1]["coordinateTransformations"][1]["translation"] == pytest.approx([-20.0, -10.6, -11.65])
    assert len(written_images(store)) == 1


def test_mixed_pixel_representation_keeps_exact_values(tmp_path, convert):
    slices = cc.axial(6, series="mixedrep")
    for ds in slices[3:]:
        arr = cc.phantom(int(ds.InstanceNumber)).astype(np.int16) - 2000
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
        ds.PixelData = arr.astype("<i2").tobytes()
    folder = cc.save(tmp_path / "mixedrep", slices)
    store, outcome = convert(folder)
    check_store(store, folder)
    assert [s.shape[0] for s in outcome.stacks] == [6]


def test_pixel_padding_value_is_the_fill_value(tmp_path, convert):
    slices = cc.axial(5, series="pad", extra={"PixelPaddingValue": 0})
    folder = cc.save(tmp_path / "pad", slices)
    store, _ = convert(folder)
    assert _root_dicom(store)["value_mapping"]["fill_value"] == -1024  # stored 0 + intercept
    assert zarr.open_array(str(store / "s0")).fill_value == -1024


def test_prone_feet_first_orientation(tmp_path, convert):
    iop = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # n = (0, 0, 1) still
    slices = [cc.ct_slice(k, series="prone", ipp=(12.0, 11.0, 40.0 - 2 * k), iop=iop) for k in range(8)]
    folder = cc.save(tmp_path / "prone", slices)
    store, _ = convert(folder)
    check_store(store, folder)
    affine = np.asarray(_root_dicom(store)["affine_lps"])
    assert affine[:3, 0] == pytest.approx([0.0, 0.0, 2.0])  # ascending along n
    assert affine[:3, 3] == pytest.approx([12.0, 11.0, 26.0])


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_slice_without_usable_position_is_kept_apart_not_dropped(tmp_path, convert):
    slices = cc.axial(6, series="nan")
    slices[2].ImagePositionPatient = ["nan", "0", "0"]
    folder = cc.save(tmp_path / "nan", slices)
    store, outcome = convert(folder)
    check_store(store, folder)
    assert [(s.role, s.n_instances) for s in outcome.stacks] == [("volume", 5), ("image2d", 1)]


def test_two_frames_of_reference_split(tmp_path, convert):
    slices = cc.axial(8, series="for")
    for ds in slices[4:]:
        ds.FrameOfReferenceUID = cc.uid("other-for")
    folder = cc.save(tmp_path / "for", slices)
    store, outcome = convert(folder)
    check_store(store, folder)
    assert [s.shape[0] for s in outcome.stacks] == [4, 4]


def test_hostile_image_headers_are_skipped_with_reasons(tmp_path, convert):
    slices = cc.axial(6, series="hostile")
    slices[3].SamplesPerPixel = 2
    slices[4].BitsAllocated = 12
    slices[5].Rows = 65535
    slices[5].Columns = 65535
    folder = cc.save(tmp_path / "hostile", slices)
    store, outcome = convert(folder)
    reasons = sorted(s.reason.split(":")[0] for s in outcome.skipped)
    assert reasons == ["implausible image header", "oversize image", "unsupported BitsAllocated=12"]
    assert [s.n_instances for s in outcome.stacks] == [3]
    check_store(store, folder)
