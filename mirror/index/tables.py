"""Arrow tables <-> partition files: typed conversion, hive paths, derived tables."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mirror.index.publish import snapshot_prefix, write_table
from mirror.index.schema import PARTITION_COLUMN, collection_id, file_schema, schema
from mirror.storage.port import Store

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


def to_table(rows: list[dict[str, Any]], table: str) -> pa.Table:
    """Rows (dicts keyed by column name) as a typed table of ``table``'s full schema."""
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=schema(table))


def empty(table: str) -> pa.Table:
    return schema(table).empty_table()


def part_key(snapshot_id: str, table: str, cid: str, name: str) -> str:
    return f"{snapshot_prefix(snapshot_id)}/{table}/{PARTITION_COLUMN}={cid}/{name}.parquet"


def part_collection(key: str) -> str:
    """The ``collection_id`` a partition file belongs to, from its hive folder name."""
    for part in key.split("/"):
        if part.startswith(PARTITION_COLUMN + "="):
            return part.split("=", 1)[1]
    raise ValueError(f"not a partition file: {key}")


def rebase_key(key: str, snapshot_id: str) -> str:
    """The same partition file's key inside another snapshot."""
    head, _, rest = key.partition("/snapshots/")
    return f"{head}/snapshots/{snapshot_id}/{rest.split('/', 1)[1]}"


def read_part(store: Store, key: str, table: str) -> pa.Table:
    """One partition file with its ``collection_id`` column restored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with store.open_read(key) as fh:
        data = pq.read_table(fh)
    cid = pa.array([part_collection(key)] * data.num_rows, pa.string())
    return data.append_column(PARTITION_COLUMN, cid).select(schema(table).names)


def write_part(store: Store, key: str, data: pa.Table, table: str) -> None:
    names = file_schema(table).names
    write_table(store, key, data.select(names).cast(file_schema(table)))


def batch_name(series_uids: Iterable[str]) -> str:
    """Deterministic part-file name for a batch: the same series give the same name."""
    digest = hashlib.sha1("\n".join(sorted(series_uids)).encode()).hexdigest()[:16]
    return f"part-{digest}"


_STUDIES = """
SELECT collection_id, PatientID, StudyInstanceUID, min(StudyDate) AS StudyDate,
       any_value(StudyDescription) AS StudyDescription, any_value(PatientAge) AS PatientAge,
       count(*) AS series_count, sum(instanceCount) AS instanceCount,
       sum(series_size_MB) AS study_size_MB,
       list_sort(list_distinct(list(Modality))) AS modalities
FROM s GROUP BY ALL ORDER BY collection_id, PatientID, StudyInstanceUID
"""
_PATIENTS = """
SELECT collection_id, PatientID, any_value(PatientSex) AS PatientSex,
       count(DISTINCT StudyInstanceUID) AS study_count, count(*) AS series_count,
       sum(instanceCount) AS instanceCount
FROM s GROUP BY ALL ORDER BY collection_id, PatientID
"""
_COLLECTIONS = """
SELECT collection_id, any_value(Collection) AS Collection,
       count(DISTINCT PatientID) AS patient_count,
       count(DISTINCT StudyInstanceUID) AS study_count, count(*) AS series_count,
       sum(instanceCount) AS instanceCount, sum(series_size_MB) AS collection_size_MB,
       list_sort(list_distinct(list(Modality))) AS modalities,
       list_sort(list_distinct(list(license_short_name))) AS licenses
FROM s GROUP BY collection_id ORDER BY collection_id
"""
DERIVED = {"studies": _STUDIES, "patients": _PATIENTS, "collections": _COLLECTIONS}


def derive(series: pa.Table) -> dict[str, pa.Table]:
    """``studies``, ``patients`` and ``collections`` rows from the ``series`` table."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("s", series)
        return {name: con.execute(sql).to_arrow_table().cast(schema(name))
                for name, sql in DERIVED.items()}
    finally:
        con.close()


_VOLUME_KEYS = {"SeriesInstanceUID": "series_uid", "Collection": "collection",
                "Modality": "modality"}


def volumes_table(rows: list[dict[str, Any]], series: pa.Table) -> pa.Table:
    """The ``volumes`` table: stack rows of stores converted from the indexed content.

    ``rows`` are :func:`mirror.index.volumes.store_volume_rows` rows. A store converted
    from older content (its ``content_hash`` differs) or belonging to a series no longer
    indexed is left out.
    """
    import pyarrow as pa

    current = set(zip(series.column("SeriesInstanceUID").to_pylist(),
                      series.column("content_hash").to_pylist(), strict=True))
    names = schema("volumes").names
    out = [{**{n: row.get(_VOLUME_KEYS.get(n, n)) for n in names},
            "collection_id": collection_id(str(row.get("collection", "")))}
           for row in rows if (row.get("series_uid"), row.get("content_hash")) in current]
    return pa.Table.from_pylist(out, schema=schema("volumes"))
