"""The mirror's on-disk (or in-bucket) layout and the per-series sidecar.

Shared by sync (writes it), verify/ledger rebuild (read it), index and convert (read it).

Layout under a destination root::

    <Collection>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/
        00000001.dcm ...                 instance files as the archive named them
        _series.json                     written LAST: the commit marker and manifest
    _index/                              Parquet snapshots + LATEST pointer
    _zarr/                               derived OME-Zarr stores
    _runs/<run_id>.json                  run summaries
    _attic/<run_id>/...                  replaced or withdrawn series (only with --delete)
    .staging/                            in-flight work (never read by anyone else)

Every component taken from the listing or from DICOM headers passes :func:`safe_component`
(PatientID is free text and may hold ``../``); UIDs must pass :func:`check_uid`.
Sanitised names never start with ``_`` or ``.``, so they cannot collide with the
reserved top-level folders above.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mirror.errors import IntegrityError, UsageError

SIDECAR_NAME = "_series.json"
LICENSE = "LICENSE"  # the one non-instance file a series folder may hold (NBIA ships it)
SIDECAR_SCHEMA_VERSION = 1
RESERVED_PREFIXES = ("_index", "_zarr", "_runs", "_attic", ".staging", "_locks", "_state")
DEFAULT_TEMPLATE = "{collection}/{patient_id}/{study_uid}/{series_uid}"
TEMPLATE_FIELDS = frozenset(
    {"collection", "patient_id", "study_uid", "series_uid", "modality", "series_number"}
)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_COMPONENT = 100


def check_uid(uid: str) -> str:
    """Return ``uid`` if it is a DICOM UID (digits and dots, at most 64 chars), else raise."""
    if len(uid) > 64 or not _UID_RE.fullmatch(uid):
        raise IntegrityError(f"not a DICOM UID: {uid[:80]!r}")
    return uid


def safe_component(text: str) -> str:
    """Map free text (PatientID, collection, description) to one safe path component.

    Deterministic, so the same PatientID always lands in the same folder. Anything outside
    ``[A-Za-z0-9._+-]`` becomes ``_``; a leading ``.`` or ``_`` becomes ``-`` (no hidden
    files, no clash with reserved folders); overlong names are cut and suffixed with a
    hash of the original so two long IDs stay distinct.
    """
    normal = unicodedata.normalize("NFKC", text).strip()
    cleaned = _UNSAFE_CHARS.sub("_", normal).strip("_") or "_"
    if cleaned[0] in "._":
        cleaned = "-" + cleaned[1:]
    if cleaned.strip(".-") == "":
        cleaned = "-" + hashlib.sha1(normal.encode()).hexdigest()[:8]
    if len(cleaned) > _MAX_COMPONENT:
        digest = hashlib.sha1(normal.encode()).hexdigest()[:10]
        cleaned = f"{cleaned[: _MAX_COMPONENT - 11]}-{digest}"
    return cleaned


def series_path(
    *,
    collection: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    modality: str = "",
    series_number: int | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> str:
    """Relative path (``/``-separated) of one series under the destination root."""
    values = {
        "collection": safe_component(collection),
        "patient_id": safe_component(patient_id),
        "study_uid": check_uid(study_uid),
        "series_uid": check_uid(series_uid),
        "modality": safe_component(modality or "NA"),
        "series_number": safe_component(str(series_number) if series_number is not None else "NA"),
    }
    try:
        rendered = template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"bad layout template {template!r}: fields are {sorted(TEMPLATE_FIELDS)}"
        ) from exc
    parts = [p for p in rendered.split("/") if p]
    if "{series_uid}" not in template or any(p in (".", "..") for p in parts):
        raise UsageError(f"layout template {template!r} must contain {{series_uid}}")
    return "/".join(parts)


def normalize_md5(value: str) -> str:
    """Upstream MD5 hex as comparable text: lowercase, left-padded to 32.

    CTP-ingested images store ``BigInteger.toString(16)``, which drops leading zeros.
    """
    text = value.strip().lower()
    if not text or len(text) > 32 or any(c not in "0123456789abcdef" for c in text):
        raise IntegrityError(f"not an MD5 hex digest: {value[:40]!r}")
    return text.zfill(32)


@dataclass(frozen=True, slots=True)
class InstanceEntry:
    """One committed file of a series."""

    name: str  # file name inside the series folder (as the archive's ZIP named it)
    md5: str  # normalised 32-char lowercase hex, verified against the archive
    size: int  # bytes


@dataclass(frozen=True)
class SeriesSidecar:
    """Contents of ``_series.json``: the commit marker and manifest of one series.

    ``content_hash`` depends only on the multiset of instance MD5s (not on file names or
    order), so re-downloading identical content gives an identical hash even though the
    archive's default entry names follow an unspecified database order.
    """

    series_uid: str
    study_uid: str
    patient_id: str
    collection: str
    modality: str
    path: str  # relative series folder under the destination root
    instances: tuple[InstanceEntry, ...]
    fingerprint: tuple[int, int, str, str]  # SeriesRecord.fingerprint at sync time
    series_version: int
    run_id: str
    synced_at: str  # ISO-8601 UTC
    tool_version: str
    license_name: str = ""
    license_uri: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # other listing fields
    schema_version: int = SIDECAR_SCHEMA_VERSION
    # NBIA's getMD5Hierarchy series hash, over the digests exactly as md5hashes.csv gave
    # them (each verified against its file); "" in sidecars written before it was kept.
    md5_hierarchy: str = ""

    @property
    def content_hash(self) -> str:
        return content_hash(self.instances)

    @property
    def image_count(self) -> int:
        return len(self.instances)

    @property
    def total_size(self) -> int:
        return sum(i.size for i in self.instances)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["content_hash"] = self.content_hash
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> SeriesSidecar:
        try:
            data = json.loads(raw)
            data.pop("content_hash", None)
            data["instances"] = tuple(InstanceEntry(**i) for i in data["instances"])
            data["fingerprint"] = tuple(data["fingerprint"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"unreadable {SIDECAR_NAME}: {exc}") from exc


def hierarchy_md5(digests: Iterable[str]) -> str:
    """One node of NBIA's MD5 hierarchy: md5 over the sorted, concatenated child hashes
    (at the series level, the instances' digests as the archive stores them)."""
    return hashlib.md5("".join(sorted(digests)).encode()).hexdigest()


def hierarchy_candidates(sidecar: SeriesSidecar) -> frozenset[str]:
    """The series hash the archive may hold for these files: the recorded one, else every
    digest padded to 32 (as we keep them) or every digest unpadded (CTP's toString(16))."""
    if sidecar.md5_hierarchy:
        return frozenset({sidecar.md5_hierarchy})
    md5s = [i.md5 for i in sidecar.instances]
    return frozenset({hierarchy_md5(md5s), hierarchy_md5(m.lstrip("0") or "0" for m in md5s)})


def content_hash(instances: tuple[InstanceEntry, ...] | list[InstanceEntry]) -> str:
    digests = sorted(i.md5 for i in instances)
    return hashlib.md5("".join(digests).encode()).hexdigest()
