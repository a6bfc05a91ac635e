"""The IDC release's Parquet files as a series listing (no bucket listing, ever).

Where the files come from, in order: an explicit ``DIR`` or ``URL`` (``--idc-index``) holding
``idc_index.parquet`` and optionally ``collections_index.parquet``,
``prior_versions_index.parquet`` and ``version_metadata_index.parquet``; else the installed
``idc-index-data`` package. Only the columns and rows asked for are read (pyarrow filters),
so listing one collection of the 74 MB v25 index stays well under a second and a few
hundred MB.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from mirror.archive.idc.names import check_series_uuid, collection_id
from mirror.errors import ArchiveProtocolError, ArchiveUnavailable, UsageError

log = logging.getLogger(__name__)

INDEX = "idc_index.parquet"
COLLECTIONS = "collections_index.parquet"
PRIOR = "prior_versions_index.parquet"
VERSIONS = "version_metadata_index.parquet"
_OPTIONAL = (COLLECTIONS, PRIOR, VERSIONS)
_COLUMNS = (
    "collection_id", "analysis_result_id", "PatientID", "SeriesInstanceUID", "StudyInstanceUID",
    "source_DOI", "PatientAge", "PatientSex", "StudyDate", "BodyPartExamined", "Modality",
    "Manufacturer", "ManufacturerModelName", "SeriesDate", "SeriesDescription", "SeriesNumber",
    "instanceCount", "license_short_name", "series_init_idc_version",
    "series_revised_idc_version", "aws_bucket", "crdc_series_uuid", "series_size_MB",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdcSeries:
    """One ``idc_index`` row: a current series version and what it promises."""

    series_uid: str
    study_uid: str
    patient_id: str
    collection_id: str
    collection: str  # the name users know (``TCGA-LUAD``), from collections_index
    modality: str
    crdc_series_uuid: str  # the version token: a revision gets a new uuid (and prefix)
    aws_bucket: str
    instance_count: int
    size_mb: float  # decimal MB = bytes / 1e6, rounded to the byte (idc-source.md §2)
    init_version: int
    revised_version: int
    license: str = ""
    source_doi: str = ""
    analysis_result_id: str = ""
    series_description: str = ""
    series_number: str = ""
    body_part: str = ""
    manufacturer: str = ""
    manufacturer_model: str = ""
    series_date: str = ""
    study_date: str = ""
    patient_sex: str = ""
    patient_age: str = ""

    @property
    def expected_bytes(self) -> int:
        return round(self.size_mb * 1e6)


@dataclass(frozen=True, slots=True)
class IndexFiles:
    index: Path
    collections: Path | None = None
    prior: Path | None = None
    versions: Path | None = None


def locate(source: str | None = None, *, cache_dir: Path | None = None) -> IndexFiles:
    """Resolve ``--idc-index`` (a DIR, an http(s) URL, or None for the installed package)."""
    if source is None or source == "":
        return _from_package()
    if source.startswith(("http://", "https://")):
        return _from_dir(_download(source, cache_dir))
    return _from_dir(Path(source))


def _from_package() -> IndexFiles:
    try:
        import idc_index_data
    except ImportError:
        raise UsageError(
            "no IDC index: install idc-index-data (pip install 'tcia-mirror[idc]') or pass "
            "--idc-index DIR|URL"
        ) from None
    return _from_dir(Path(str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)).parent)


def _from_dir(folder: Path) -> IndexFiles:
    if not (folder / INDEX).is_file():
        raise UsageError(f"{folder} holds no {INDEX}")
    found = {name: folder / name for name in _OPTIONAL if (folder / name).is_file()}
    return IndexFiles(folder / INDEX, found.get(COLLECTIONS), found.get(PRIOR), found.get(VERSIONS))


def _download(url: str, cache_dir: Path | None) -> Path:
    import httpx

    base = url.rstrip("/") + "/"
    folder = (cache_dir or Path(tempfile.gettempdir())) / (
        "mirror-idc-" + hashlib.sha256(base.encode()).hexdigest()[:16]
    )
    folder.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0)) as client:
        for name in (INDEX, *_OPTIONAL):
            _fetch_file(client, base + name, folder / name, required=name == INDEX)
    return folder


def _fetch_file(client: Any, url: str, dest: Path, *, required: bool) -> None:
    import httpx

    partial = dest.with_suffix(".partial")
    try:
        with client.stream("GET", url) as response:
            if response.status_code == 404 and not required:
                return
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise ArchiveUnavailable(f"cannot fetch the IDC index file {url}: {exc}") from exc
    partial.replace(dest)


class IdcIndex:
    """One IDC release's listing. Cheap to construct: files are read on demand."""

    def __init__(self, files: IndexFiles, *, include_analysis_results: bool = False) -> None:
        self.files = files
        self.include_analysis_results = include_analysis_results
        self._names: dict[str, str] | None = None

    @classmethod
    def open(cls, source: str | None = None, **kwargs: Any) -> IdcIndex:
        return cls(locate(source), **kwargs)

    @property
    def release(self) -> str:
        """The index's data version (``idc_index_data_version`` metadata), e.g. ``25.0.5``."""
        import pyarrow.parquet as pq

        meta = pq.read_schema(self.files.index).metadata or {}
        raw = meta.get(b"idc_index_data_version", b"").decode()
        return raw.split("-", 1)[0] if raw else ""

    def collection_names(self) -> dict[str, str]:
        """``collection_id`` -> the name users know; derived when collections_index is absent."""
        if self._names is None:
            self._names = self._read_names()
        return self._names

    def _read_names(self) -> dict[str, str]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if self.files.collections is not None:
            table = pq.read_table(
                self.files.collections, columns=["collection_id", "collection_name"]
            )
            return dict(
                zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
            )
        ids = pc.unique(pq.read_table(self.files.index, columns=["collection_id"]).column(0))
        # Without collections_index the display name is a guess (right for TCGA-*).
        return {cid: cid.upper().replace("_", "-") for cid in ids.to_pylist()}

    def collection_ids(self) -> list[str]:
        """Collections holding at least one listed series (two columns read, not the rows)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(self.files.index, columns=["collection_id", "analysis_result_id"])
        if not self.include_analysis_results:
            table = table.filter(pc.is_null(table["analysis_result_id"]))
        return sorted(pc.unique(table["collection_id"]).to_pylist())

    def series(
        self,
        collections: Sequence[str] | None = None,
        *,
        series_uids: Iterable[str] | None = None,
        revised_in: Iterable[int] | None = None,
    ) -> list[IdcSeries]:
        """Current series of the named collections (any spelling), or of the whole index;
        optionally only those revised in the given IDC versions. Filters are pushed into the
        Parquet read, so a narrow question reads few rows."""
        filters: list[Any] = []
        if revised_in is not None:
            filters.append(("series_revised_idc_version", "in", sorted(set(revised_in))))
        if collections is not None:
            filters.append(("collection_id", "in", sorted({collection_id(c) for c in collections})))
        if series_uids is not None:
            filters.append(("SeriesInstanceUID", "in", sorted(set(series_uids))))
        rows = _read_rows(self.files.index, filters)
        if not self.include_analysis_results:
            rows = [r for r in rows if not r.get("analysis_result_id")]
        names = self.collection_names()
        return [_series(r, names) for r in rows]

    def versions(self) -> dict[str, str]:
        """``SeriesInstanceUID`` -> ``crdc_series_uuid`` for the whole release (plan input)."""
        import pyarrow.parquet as pq

        cols = ["SeriesInstanceUID", "crdc_series_uuid", "analysis_result_id"]
        table = pq.read_table(self.files.index, columns=cols)
        uids, uuids, derived = (table.column(c).to_pylist() for c in cols)
        keep = self.include_analysis_results
        return {u: v for u, v, d in zip(uids, uuids, derived, strict=True) if keep or not d}

    def release_dates(self) -> dict[int, date]:
        """IDC version -> release date, from version_metadata_index (empty when absent)."""
        import pyarrow.parquet as pq

        if self.files.versions is None:
            return {}
        table = pq.read_table(self.files.versions, columns=["idc_version", "version_timestamp"])
        pairs = zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
        return {int(v): date.fromisoformat(str(ts)[:10]) for v, ts in pairs}

    def prior_versions(self, series_uids: Iterable[str]) -> dict[str, list[tuple[str, int, int]]]:
        """Older ``(crdc_series_uuid, min_idc_version, max_idc_version)`` per series."""
        import pyarrow.parquet as pq

        if self.files.prior is None:
            return {}
        cols = ["SeriesInstanceUID", "crdc_series_uuid", "min_idc_version", "max_idc_version"]
        wanted = sorted(set(series_uids))
        table = pq.read_table(
            self.files.prior, columns=cols, filters=[("SeriesInstanceUID", "in", wanted)]
        )
        out: dict[str, list[tuple[str, int, int]]] = {}
        for row in table.to_pylist():
            out.setdefault(row["SeriesInstanceUID"], []).append(
                (row["crdc_series_uuid"], int(row["min_idc_version"]), int(row["max_idc_version"]))
            )
        return out


def _read_rows(path: Path, filters: list[Any]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(_COLUMNS), filters=filters or None)
    except (OSError, ValueError, KeyError) as exc:
        raise ArchiveProtocolError(f"unreadable IDC index {path}: {exc}") from exc
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _series(row: dict[str, Any], names: dict[str, str]) -> IdcSeries:
    cid = _text(row["collection_id"])
    try:
        return IdcSeries(
            series_uid=_text(row["SeriesInstanceUID"]),
            study_uid=_text(row["StudyInstanceUID"]),
            patient_id=_text(row["PatientID"]),
            collection_id=cid,
            collection=names.get(cid, cid),
            modality=_text(row["Modality"]),
            crdc_series_uuid=check_series_uuid(_text(row["crdc_series_uuid"])),
            aws_bucket=_text(row["aws_bucket"]),
            instance_count=int(row["instanceCount"]),
            size_mb=float(row["series_size_MB"]),
            init_version=int(row["series_init_idc_version"] or 0),
            revised_version=int(row["series_revised_idc_version"] or 0),
            license=_text(row["license_short_name"]),
            source_doi=_text(row["source_DOI"]),
            analysis_result_id=_text(row["analysis_result_id"]),
            series_description=_text(row["SeriesDescription"]),
            series_number=_text(row["SeriesNumber"]),
            body_part=_text(row["BodyPartExamined"]),
            manufacturer=_text(row["Manufacturer"]),
            manufacturer_model=_text(row["ManufacturerModelName"]),
            series_date=_text(row["SeriesDate"]),
            study_date=_text(row["StudyDate"]),
            patient_sex=_text(row["PatientSex"]),
            patient_age=_text(row["PatientAge"]),
        )
    except (TypeError, ValueError) as exc:
        raise ArchiveProtocolError(
            f"bad idc_index row {row.get('SeriesInstanceUID')!r}: {exc}"
        ) from exc


__all__ = ["IdcIndex", "IdcSeries", "IndexFiles", "locate"]
