"""Frames from stored files without decoding them, and decoded frames when asked.

Native pixel data: a frame is a byte range at a known offset, read directly. Encapsulated
pixel data: the frame's fragments are passed through (``pydicom.encaps.get_frame``). Only a
request for a native copy of compressed data, or a rendered image, decodes pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from mirror.errors import BadRequest, NotAcceptable, NotFoundError
from mirror.serve.accept import EVRBE, NATIVE_TS

PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True, slots=True)
class PixelInfo:
    transfer_syntax: str
    offset: int  # file offset of the Pixel Data value
    length: int  # value length (0xFFFFFFFF when encapsulated)
    rows: int
    columns: int
    samples: int
    bits: int
    frames: int

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax not in NATIVE_TS

    @property
    def frame_bits(self) -> int:
        return self.rows * self.columns * self.samples * self.bits


def pixel_info(fh: BinaryIO) -> PixelInfo:
    """Where the pixel data of an open DICOM file is, read from its header only."""
    import pydicom

    ds = pydicom.dcmread(fh, defer_size=256)
    if PIXEL_DATA not in ds:
        raise NotFoundError("the instance has no pixel data")
    raw: Any = ds.get_item(PIXEL_DATA, keep_deferred=True)
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts == "1.2.840.10008.1.2.1.99":  # deflated: offsets refer to the inflated stream
        raise NotAcceptable("frames of deflated files are not supported")
    return PixelInfo(ts, int(raw.value_tell), int(raw.length), int(ds.Rows), int(ds.Columns),
                     int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated),
                     int(ds.get("NumberOfFrames", 1) or 1))


def check_frames(numbers: list[int], info: PixelInfo) -> None:
    bad = [n for n in numbers if n > info.frames]
    if bad:
        raise NotFoundError(f"frame {bad[0]} does not exist (the instance has {info.frames})")


def stored_frame(fh: BinaryIO, info: PixelInfo, number: int) -> bytes:
    """Frame ``number`` (1-based) as stored: native bytes, or the compressed codestream."""
    if info.encapsulated:
        from pydicom.encaps import get_frame

        fh.seek(info.offset)
        return bytes(get_frame(fh, number - 1, number_of_frames=info.frames))
    if info.frame_bits % 8:
        return _bit_frame(fh, info, number)
    size = info.frame_bits // 8
    fh.seek(info.offset + (number - 1) * size)
    data = fh.read(size)
    if len(data) != size:
        raise NotFoundError(f"frame {number} is truncated in the stored file")
    if info.transfer_syntax == EVRBE and info.bits > 8:
        import numpy as np

        return np.frombuffer(data, f">u{info.bits // 8}").astype(f"<u{info.bits // 8}").tobytes()
    return data


def _bit_frame(fh: BinaryIO, info: PixelInfo, number: int) -> bytes:
    """A frame of 1-bit pixels that does not start on a byte boundary (PS3.5 8.1.1)."""
    import numpy as np

    start, count = (number - 1) * info.frame_bits, info.frame_bits
    fh.seek(info.offset + start // 8)
    raw = np.frombuffer(fh.read((start % 8 + count + 7) // 8), np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[start % 8 : start % 8 + count]
    return np.packbits(bits, bitorder="little").tobytes()


def decoded_frame(fh: BinaryIO, number: int) -> Any:
    """Frame ``number`` decoded to a numpy array (compressed data goes through pydicom)."""
    from pydicom.pixels.utils import pixel_array

    fh.seek(0)
    try:
        return pixel_array(fh, index=number - 1)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        raise NotAcceptable(f"cannot decode this frame: {exc}") from exc


def native_bytes(array: Any) -> bytes:
    """A decoded frame as Explicit VR Little Endian pixel bytes (interleaved samples)."""
    dtype = array.dtype.newbyteorder("<")
    return bytes(array.astype(dtype, copy=False).tobytes())


def parse_frame_list(text: str, max_frames: int) -> list[int]:
    """``"1,3,5"`` -> ``[1, 3, 5]``; each number >= 1, at most ``max_frames`` of them."""
    parts = text.split(",")
    if len(parts) > max_frames:
        raise BadRequest(f"at most {max_frames} frames per request")
    numbers = []
    for raw in parts:
        part = raw.strip()
        if not part.isdigit() or len(part) > 9 or int(part) < 1:
            raise BadRequest(f"malformed frame number: {part[:20]!r}")
        numbers.append(int(part))
    return numbers


def header(fh: BinaryIO) -> Any:
    import pydicom

    fh.seek(0)
    return pydicom.dcmread(fh, stop_before_pixels=True)
