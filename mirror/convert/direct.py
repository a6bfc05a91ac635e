"""Stored values straight from the pixel bytes the header scan located (no second parse).

Native little-endian planes are read into the slab with ``readinto``; JPEG 2000 and HTJ2K
frames are cut out with pydicom's encapsulation helpers and decoded by imagecodecs, whose
OpenJPEG binding releases the GIL, so a thread pool decodes on every core (pylibjpeg-openjpeg
through pydicom holds it). Anything this module is not sure about answers False and the
caller decodes through pydicom, so the values equal pydicom's ``pixel_array`` exactly,
including its handling of unused high bits (tests/convert/test_direct.py checks both).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.encaps import get_frame

from mirror.convert.scan import SliceHeader
from mirror.convert.values import stored_dtype

NATIVE = frozenset(
    {str(pydicom.uid.ExplicitVRLittleEndian), str(pydicom.uid.ImplicitVRLittleEndian)}
)
J2K = frozenset(str(u) for u in pydicom.uid.JPEG2000TransferSyntaxes)  # includes HTJ2K
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

Plane = tuple[SliceHeader, np.ndarray]  # header, 2D destination of stored_dtype(header)


@functools.cache
def _imagecodecs() -> ModuleType | None:
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs if imagecodecs.JPEG2K.available else None


def decoder_name(h: SliceHeader) -> str:
    """Which direct decoder serves ``h`` ("" = none: pydicom decodes it)."""
    if not supported(h):
        return ""
    return "native" if h.transfer_syntax in NATIVE else "imagecodecs"


def supported(h: SliceHeader) -> bool:
    """Whether ``h`` can be read directly (else pydicom decodes it)."""
    if h.pixel_offset < 0 or h.samples != 1 or h.photometric not in _MONOCHROME:
        return False
    if h.modality_lut or h.bits_allocated not in (8, 16, 32) or sys.byteorder != "little":
        return False
    if not 1 <= h.bits_stored <= h.bits_allocated:
        return False  # pydicom rejects these; let it say so
    if h.transfer_syntax in NATIVE:
        return h.pixel_length >= 0
    return h.transfer_syntax in J2K and _imagecodecs() is not None


def read_file(fp: BinaryIO, planes: Sequence[Plane]) -> bool:
    """Fill every destination of one file; False means "decode this file with pydicom"."""
    for h, dest in planes:
        if dest.dtype != stored_dtype(h) or not dest.flags.c_contiguous:
            return False
        ok = _native(fp, h, dest) if h.transfer_syntax in NATIVE else _j2k(fp, h, dest)
        if not ok:
            return False
    return True


def _native(fp: BinaryIO, h: SliceHeader, dest: np.ndarray) -> bool:
    nbytes = dest.nbytes
    index = h.frame or 0
    if h.pixel_length < (index + 1) * nbytes:
        return False  # short pixel data: pydicom's error message is the better one
    try:
        fp.seek(h.pixel_offset + index * nbytes)
        got = fp.readinto(dest.reshape(-1).view(np.uint8))  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):  # streams without seek/readinto: pydicom
        return False
    if got != nbytes:
        return False
    if h.bits_stored < h.bits_allocated:
        # as pydicom's correct_unused_bits: unused high bits carry no value (PS3.5 8.1.1);
        # the arithmetic right shift sign-extends signed data, the logical one masks
        shift = h.bits_allocated - h.bits_stored
        np.left_shift(dest, shift, out=dest)
        np.right_shift(dest, shift, out=dest)
    return True


def _j2k(fp: BinaryIO, h: SliceHeader, dest: np.ndarray) -> bool:
    codec = _imagecodecs()
    if codec is None:
        return False
    try:
        # get_frame walks the items from the file, reading only this frame's fragments
        fp.seek(h.pixel_offset)
        frame = get_frame(fp, h.frame or 0, number_of_frames=h.n_frames)
        arr = np.asarray(codec.jpeg2k_decode(frame))
    except Exception:  # corrupt codestreams raise anything; pydicom then reports it
        return False
    # A codestream whose signedness disagrees with PixelRepresentation gets pydicom's own
    # sign correction; a wider one than BitsAllocated is pydicom's to judge too.
    signed = arr.dtype.kind == "i"
    if arr.shape != dest.shape or arr.dtype.kind not in "iu" or signed != bool(h.pixel_rep):
        return False
    if arr.dtype.itemsize > dest.dtype.itemsize:
        return False
    np.copyto(dest, arr)
    return True
