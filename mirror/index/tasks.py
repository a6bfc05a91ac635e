"""The small, picklable, idempotent units a build runs on Dask (or inline).

Each task reads from and writes to the destination itself and returns only small
summaries, so nothing large travels back to the driver except the series rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mirror.errors import IntegrityError
from mirror.index.extract import extract_series
from mirror.index.publish import copy_object
from mirror.index.tables import batch_name, part_key, read_part, to_table, write_part
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one extraction batch produced."""

    series: pa.Table
    files: tuple[tuple[str, str, int], ...]  # (table, key, rows)


def read_sidecars(store: Store, keys: list[str]) -> list[SeriesSidecar]:
    """Parse committed sidecars; a corrupt one is logged and skipped (its series is not indexed)."""
    out: list[SeriesSidecar] = []
    for key in keys:
        try:
            out.append(SeriesSidecar.from_json(store.get_bytes(key)))
        except IntegrityError as exc:
            log.warning("skipping %s: %s", key, exc)
    return out


def extract_batch(
    store: Store, snapshot_id: str, cid: str, sidecars: list[SeriesSidecar]
) -> BatchResult:
    """Extract one batch of series of one collection and write its part files."""
    rows = extract_series(store, sidecars)
    name = batch_name(s.series_uid for s in sidecars)
    files: list[tuple[str, str, int]] = []
    for table, table_rows in (("instances", rows.instances), ("errors", rows.errors)):
        if table_rows:
            key = part_key(snapshot_id, table, cid, name)
            write_part(store, key, to_table(table_rows, table), table)
            files.append((table, key, len(table_rows)))
    return BatchResult(to_table(rows.series, "series"), tuple(files))


def carry_part(
    store: Store, src: str, dst: str, table: str, drop: frozenset[str]
) -> tuple[str, int] | None:
    """Bring a previous snapshot's part file forward without the series folders in ``drop``.

    Rows are matched by folder (``file_path``), not by the header's SeriesInstanceUID,
    which a hostile or unreadable file may lack or contradict. Copied as is when none of
    its series changed; rewritten without them otherwise; ``None`` when nothing is left.
    """
    import pyarrow as pa

    data = read_part(store, src, table)
    keep = [path.rsplit("/", 1)[0] not in drop for path in data.column("file_path").to_pylist()]
    if all(keep):
        copy_object(store, src, dst)
        return dst, data.num_rows
    kept = data.filter(pa.array(keep, pa.bool_()))
    if kept.num_rows == 0:
        return None
    write_part(store, dst, kept, table)
    return dst, kept.num_rows
