"""WADO-RS metadata: each instance's header as DICOM JSON, bulk values as BulkDataURIs.

Binary values above 768 bytes and the pixel data are replaced by absolute URIs under the
instance (``.../bulkdata/<tag>[/<item>/<tag>...]``) that :func:`bulk_value` resolves again,
also inside sequences. Non-finite DS/FD values are sent as strings (JSON has no NaN).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from typing import Any, BinaryIO

from mirror.errors import BadRequest, NotFoundError
from mirror.serve.accept import NATIVE_TS
from mirror.serve.fastjson import dataset_json

log = logging.getLogger(__name__)

HEAD_BYTES = 64 * 1024
BULK_THRESHOLD = 1024  # pydicom moves values longer than (1024 // 4) * 3 = 768 bytes
_PATH_RE = re.compile(r"[0-9A-Fa-f]{8}(/[0-9]{1,6}/[0-9A-Fa-f]{8}){0,8}")
PIXEL_TAG = "7FE00010"


def instance_json(fh: BinaryIO, instance_url: str) -> bytes:
    """One instance's DICOM JSON object, serialised (UTF-8)."""
    ds, fh = read_header(fh)
    # Not to_json_dict(suppress_invalid_tags=True): that flips pydicom's global validation
    # mode per call, which races between the threads answering requests.
    body = dataset_json(ds, lambda path: f"{instance_url}/bulkdata/{path}", BULK_THRESHOLD)
    if "00080005" in body:  # values were decoded; the JSON text is UTF-8
        body["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    if _has_pixels(ds, fh):
        native = str(ds.file_meta.get("TransferSyntaxUID", "")) in NATIVE_TS
        vr = "OW" if native and int(ds.get("BitsAllocated", 8)) > 8 else "OB"
        body[PIXEL_TAG] = {"vr": vr, "BulkDataURI": f"{instance_url}/bulkdata/{PIXEL_TAG}"}
    return dumps(dict(sorted(body.items())))


def read_header(fh: BinaryIO) -> tuple[Any, BinaryIO]:
    """The header (pixel data left unread) and the stream positioned where it stopped.

    The first ``HEAD_BYTES`` are read in one call and parsed from memory: half the cost of
    pydicom's many small reads on a file, and one request instead of many on S3. A header
    longer than that is parsed again from the file.
    """
    import pydicom

    head = fh.read(HEAD_BYTES)
    buffer = io.BytesIO(head)
    try:
        ds = pydicom.dcmread(buffer, stop_before_pixels=True)
        if buffer.tell() < len(head) - 8:
            return ds, buffer
    except Exception:  # cut inside an element: read it properly below
        log.debug("header longer than %d bytes, reading the file", HEAD_BYTES)
    fh.seek(0)
    return pydicom.dcmread(fh, stop_before_pixels=True), fh


def _has_pixels(ds: Any, fh: BinaryIO) -> bool:
    """``stop_before_pixels`` stopped at Pixel Data when the file has any."""
    if "BitsAllocated" not in ds or "Rows" not in ds:
        return False
    here = fh.tell()
    probe = fh.read(4)
    fh.seek(here)
    return probe == b"\xe0\x7f\x10\x00"


def dumps(body: Any) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(_finite(body), allow_nan=False, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # PS3.18 F.2.3: DS/FD may be sent as strings
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def check_bulk_path(path: str) -> str:
    if not _PATH_RE.fullmatch(path):
        raise BadRequest(f"malformed bulkdata path {path[:80]!r}")
    return path.upper()


def bulk_value(fh: BinaryIO, path: str) -> bytes:
    """The raw value of the (possibly nested) element named by ``path``, not pixel data."""
    import pydicom

    ds = pydicom.dcmread(fh, stop_before_pixels=True)
    parts = path.split("/")
    for tag, index in zip(parts[:-1:2], parts[1::2], strict=True):
        seq = ds.get(int(tag, 16))
        if seq is None or seq.VR != "SQ" or int(index) >= len(seq.value):
            raise NotFoundError(f"no bulk data at {path}")
        ds = seq.value[int(index)]
    elem = ds.get(int(parts[-1], 16))
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        raise NotFoundError(f"no bulk data at {path}")
    return bytes(elem.value)
