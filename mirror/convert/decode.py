"""Pixel decoding with an explicit plugin choice per transfer syntax (§1.11).

Fast plugins first (pylibjpeg-rle is 7-10x faster than pydicom's RLE, pyjpegls the fastest
JPEG-LS), then whatever pydicom finds. Failures become :class:`UndecodableInstance` with a
machine-readable ``reason`` so the stack is quarantined, never silently holed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from mirror.convert.scan import SliceHeader
from mirror.convert.source import InstanceSource
from mirror.errors import ConversionError

_PREFERRED = {
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE Lossless
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "pylibjpeg", "gdcm"),  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "pylibjpeg", "gdcm"),  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "gdcm"),  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "gdcm"),
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),
}
_NEEDS_LIBJPEG = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
     "1.2.840.10008.1.2.4.70"}
)  # fmt: skip


class UndecodableInstance(ConversionError):
    """One instance's pixels cannot be decoded; ``reason`` is a stable short code."""

    def __init__(self, message: str, *, reason: str, sop_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.sop_uid = sop_uid

    def __reduce__(self) -> tuple[Any, ...]:
        # crosses process boundaries (Dask): keep reason and UID, not just the message
        return (_undecodable, (str(self), self.reason, self.sop_uid))


def _undecodable(message: str, reason: str, sop_uid: str) -> UndecodableInstance:
    return UndecodableInstance(message, reason=reason, sop_uid=sop_uid)


def plugin_for(transfer_syntax: str) -> str:
    """The decoding plugin that will be tried first ("" = pydicom's own choice)."""
    decoder = _decoder(transfer_syntax)
    if decoder is None:
        return "native"
    available = set(decoder.available_plugins)
    return next((p for p in _PREFERRED.get(transfer_syntax, ()) if p in available), "")


def _decoder(transfer_syntax: str) -> Any:
    uid = pydicom.uid.UID(transfer_syntax)
    if not uid.is_transfer_syntax or not uid.is_compressed:
        return None
    try:
        return get_decoder(uid)
    except NotImplementedError:
        return None


def read_planes(source: InstanceSource, name: str, headers: Sequence[SliceHeader]) -> list[Any]:
    """Decoded stored-value planes of one file, in the order of ``headers`` (frames of it)."""
    sop_uid = headers[0].sop_uid
    with source.open(name) as fp:
        try:
            ds = pydicom.dcmread(fp, force=True)
        except Exception as exc:  # pydicom raises many types on hostile input
            raise UndecodableInstance(
                f"{name}: unreadable: {exc}", reason="unreadable", sop_uid=sop_uid
            ) from exc
        return [_decode(ds, h) for h in headers]


def _decode(ds: Dataset, h: SliceHeader) -> np.ndarray:
    ts = h.transfer_syntax
    if str(ds.file_meta.get("TransferSyntaxUID", "")) != ts:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(ts)  # no meta: as the parser read it
    if ts in _NEEDS_LIBJPEG and not _decoder(ts).is_available:
        raise UndecodableInstance(
            f"{h.name}: {pydicom.uid.UID(ts).name} needs the optional 'jpeg' extra "
            "(pylibjpeg-libjpeg, GPL-3.0): pip install 'tcia-mirror[jpeg]'",
            reason=f"decoder_missing:{ts}",
            sop_uid=h.sop_uid,
        )
    arr = _with_fallback(ds, h)
    expected = (h.rows, h.cols) if h.samples == 1 else (h.rows, h.cols, h.samples)
    if arr.shape != expected:
        raise UndecodableInstance(
            f"{h.name}: decoded shape {arr.shape} != header {expected}",
            reason="shape_mismatch",
            sop_uid=h.sop_uid,
        )
    if h.modality_lut:
        arr = apply_modality_lut(arr, ds)
    return arr


def _with_fallback(ds: Dataset, h: SliceHeader) -> np.ndarray:
    index = h.frame if h.n_frames > 1 or h.frame not in (None, 0) else None
    first = plugin_for(h.transfer_syntax)
    plugins = [first, ""] if first not in ("", "native") else [""]
    error: Exception | None = None
    for plugin in plugins:
        try:
            return np.asarray(pixel_array(ds, index=index, decoding_plugin=plugin))
        except Exception as exc:  # decoder plugins raise arbitrary types on corrupt data
            error = exc
    raise UndecodableInstance(
        f"{h.name}: decode failed: {error}", reason="decode_failed", sop_uid=h.sop_uid
    ) from error


def pixel_digest(source: InstanceSource, h: SliceHeader) -> str:
    """Hash of the decoded stored values, to tell identical duplicates from real ones."""
    plane = read_planes(source, h.name, [h])[0]
    return hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest()
