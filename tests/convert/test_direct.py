"""The direct pixel path (header-located bytes, imagecodecs for JPEG 2000/HTJ2K) equals
pydicom's ``pixel_array`` voxel for voxel, and hands anything unusual back to pydicom."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import convert_corpus as cc
import imagecodecs
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from mirror.convert import direct
from mirror.convert.scan import SliceHeader, scan_instance
from mirror.convert.values import stored_dtype


def _headers(path: Path) -> list[SliceHeader]:
    with open(path, "rb") as fp:
        result = scan_instance(path.name, fp)
    assert isinstance(result, list), result
    return result


def _direct(path: Path) -> list[np.ndarray] | None:
    headers = _headers(path)
    planes = [(h, np.zeros((h.rows, h.cols), dtype=stored_dtype(h))) for h in headers]
    assert all(direct.supported(h) for h in headers)
    with open(path, "rb") as fp:
        ok = direct.read_file(fp, planes)
    return [p for _, p in planes] if ok else None


def _pydicom(path: Path, n_frames: int = 1) -> list[np.ndarray]:
    if n_frames == 1:
        return [pixel_array(str(path))]
    return [pixel_array(str(path), index=f) for f in range(n_frames)]


def _save(tmp_path: Path, ds, name: str = "x.dcm") -> Path:
    path = tmp_path / name
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, implicit_vr=implicit)
    return path


def _slice(pixels: np.ndarray, bits: tuple[int, int, int], **extra):
    allocated, stored, rep = bits
    ds = cc.ct_slice(0, series="direct", ipp=(0, 0, 0), rows=pixels.shape[-2],
                     cols=pixels.shape[-1], pixels=pixels, extra=extra)  # fmt: skip
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, stored, stored - 1
    ds.PixelRepresentation = rep
    ds.PixelData = pixels.tobytes()
    return ds


def _assert_equal(got: list[np.ndarray] | None, want: list[np.ndarray]) -> None:
    assert got is not None
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
        assert np.array_equal(g.astype(np.int64), w.astype(np.int64))


RNG = np.random.default_rng(5)


@pytest.mark.parametrize(
    ("pixels", "bits"),
    [
        # unused high bits hold garbage: pydicom masks them (unsigned) ...
        (RNG.integers(0, 65535, (24, 20), dtype=np.uint16), (16, 12, 0)),
        # ... or sign-extends from bit 11 (signed)
        (RNG.integers(-32768, 32767, (24, 20), dtype=np.int16), (16, 12, 1)),
        (RNG.integers(-2000, 3000, (24, 20), dtype=np.int16), (16, 16, 1)),
        (RNG.integers(0, 255, (24, 20), dtype=np.uint8), (8, 8, 0)),
        (RNG.integers(-(2**31), 2**31 - 1, (24, 20), dtype=np.int32), (32, 32, 1)),
    ],
)
def test_native_planes_equal_pydicom(tmp_path, pixels, bits):
    path = _save(tmp_path, _slice(pixels, bits))
    assert _headers(path)[0].pixel_offset > 0
    _assert_equal(_direct(path), _pydicom(path))


def test_implicit_vr_and_multi_frame_native(tmp_path):
    frames = RNG.integers(0, 4095, (3, 16, 18), dtype=np.uint16)
    ds = _slice(frames, (16, 12, 0), NumberOfFrames=3)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = _save(tmp_path, ds)
    headers = _headers(path)
    assert [h.frame for h in headers] == [0, 1, 2]
    _assert_equal(_direct(path), _pydicom(path, 3))


@pytest.mark.parametrize(
    ("pixels", "bits"),
    [
        (RNG.integers(-2000, 3000, (40, 36), dtype=np.int16), (16, 16, 1)),
        (RNG.integers(0, 4095, (40, 36), dtype=np.uint16), (16, 12, 0)),
        (RNG.integers(-2048, 2047, (40, 36), dtype=np.int16), (16, 12, 1)),
        (RNG.integers(0, 255, (40, 36), dtype=np.uint8), (8, 8, 0)),
    ],
)
def test_jpeg2000_lossless_via_imagecodecs_equals_pydicom(tmp_path, pixels, bits):
    ds = _slice(pixels, bits)
    ds.compress(JPEG2000Lossless)
    path = _save(tmp_path, ds)
    assert direct.decoder_name(_headers(path)[0]) == "imagecodecs"
    want = _pydicom(path)
    np.testing.assert_array_equal(want[0], pixels)  # the reference itself is lossless
    _assert_equal(_direct(path), want)


@pytest.mark.parametrize("dtype", ["int16", "uint16"])
def test_htj2k_lossless_via_imagecodecs_equals_pydicom(tmp_path, dtype):
    pixels = RNG.integers(0, 3000, (40, 36)).astype(dtype)
    ds = _slice(pixels, (16, 16, int(dtype == "int16")))
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.PixelData = encapsulate([imagecodecs.htj2k_encode(pixels)])
    ds["PixelData"].VR = "OB"
    path = _save(tmp_path, ds)
    want = _pydicom(path)
    np.testing.assert_array_equal(want[0], pixels)
    _assert_equal(_direct(path), want)


def test_multi_frame_jpeg2000(tmp_path):
    frames = RNG.integers(0, 4095, (3, 40, 36), dtype=np.uint16)
    ds = _slice(frames, (16, 12, 0), NumberOfFrames=3)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    path = _save(tmp_path, ds)
    _assert_equal(_direct(path), _pydicom(path, 3))


def test_signedness_mismatch_goes_back_to_pydicom(tmp_path):
    # unsigned codestream under PixelRepresentation 1: pydicom's sign correction decides
    pixels = RNG.integers(0, 4095, (16, 16), dtype=np.uint16)
    ds = _slice(pixels, (16, 12, 1))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="j2k")])
    ds["PixelData"].VR = "OB"
    assert _direct(_save(tmp_path, ds)) is None


def test_corrupt_codestream_goes_back_to_pydicom(tmp_path):
    ds = _slice(RNG.integers(0, 4095, (16, 16), dtype=np.uint16), (16, 12, 0))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 40])
    ds["PixelData"].VR = "OB"
    assert _direct(_save(tmp_path, ds)) is None


def test_short_native_pixel_data_goes_back_to_pydicom(tmp_path):
    ds = _slice(RNG.integers(0, 4095, (16, 16), dtype=np.uint16), (16, 12, 0))
    ds.PixelData = ds.PixelData[:-64]
    assert _direct(_save(tmp_path, ds)) is None


def test_unsupported_planes_are_left_to_pydicom(tmp_path):
    rle = _slice(RNG.integers(0, 4095, (16, 16), dtype=np.uint16), (16, 12, 0))
    rle.compress(RLELossless)
    assert not direct.supported(_headers(_save(tmp_path, rle, "rle.dcm"))[0])
    rgb = _slice(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8), (8, 8, 0))
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    assert not direct.supported(_headers(_save(tmp_path, rgb, "rgb.dcm"))[0])
    plain = _headers(_save(tmp_path, _slice(RNG.integers(0, 9, (4, 4), dtype=np.uint16), (16, 12, 0))))[0]
    assert direct.supported(plain)
    assert not direct.supported(dataclasses.replace(plain, modality_lut=True))
    assert not direct.supported(dataclasses.replace(plain, pixel_offset=-1))
