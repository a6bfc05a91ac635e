"""The index snapshot the server answers from, swapped when ``_index/LATEST`` moves.

Each snapshot is loaded once into an in-memory DuckDB database: one row per readable
instance of a committed series (joined to its series folder), plus study and series
rollups for QIDO's counts. Only what the index lists is visible, so staging, the attic and
anything an index build left out (withdrawn tombstones) are never served. Requests take a
cursor of the snapshot current when they start; a swap never changes a running answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mirror.index.publish import Pointer, read_pointer, require_pointer
from mirror.index.views import attach
from mirror.storage.port import Store

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# Folder of the instance file == the series folder the sidecar named: a header whose UIDs
# disagree with its folder cannot pull a file from elsewhere into another series.
_INSTANCES = """
CREATE TABLE inst AS
SELECT i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.SOPClassUID,
       i.InstanceNumber, i.Rows, i.Columns, i.BitsAllocated, i.NumberOfFrames,
       i.TransferSyntaxUID, i.file_path, i.file_size,
       i.PatientID, i.PatientName, i.PatientBirthDate, i.PatientSex, i.PatientAge,
       i.StudyDate, i.StudyTime, i.AccessionNumber, i.StudyID, i.StudyDescription,
       i.Modality, i.SeriesNumber, i.SeriesDescription, i.SeriesDate, i.SeriesTime,
       i.BodyPartExamined, i.Manufacturer, i.WindowCenter, i.WindowWidth,
       i.PhotometricInterpretation, s.series_path, s.Collection, i.collection_id
FROM instances i JOIN series s
  ON s.series_path = regexp_replace(i.file_path, '/[^/]*$', '')
WHERE i.read_error IS NULL AND i.SOPInstanceUID IS NOT NULL
  AND i.StudyInstanceUID IS NOT NULL AND i.SeriesInstanceUID IS NOT NULL
  AND s.SeriesInstanceUID NOT IN (SELECT uid FROM excluded)
ORDER BY i.StudyInstanceUID, i.SeriesInstanceUID, i.InstanceNumber, i.SOPInstanceUID
"""

_SERIES = """
CREATE TABLE ser AS
SELECT StudyInstanceUID, SeriesInstanceUID, min(Modality) AS Modality,
       min(SeriesNumber) AS SeriesNumber, min(SeriesDescription) AS SeriesDescription,
       min(SeriesDate) AS SeriesDate, min(SeriesTime) AS SeriesTime,
       min(BodyPartExamined) AS BodyPartExamined, min(Manufacturer) AS Manufacturer,
       count(*) AS n_instances, min(series_path) AS series_path, min(Collection) AS Collection,
       min(collection_id) AS collection_id
FROM inst GROUP BY ALL ORDER BY StudyInstanceUID, SeriesNumber, SeriesInstanceUID
"""

_STUDIES = """
CREATE TABLE stu AS
SELECT StudyInstanceUID, min(PatientID) AS PatientID, min(PatientName) AS PatientName,
       min(PatientBirthDate) AS PatientBirthDate, min(PatientSex) AS PatientSex,
       min(PatientAge) AS PatientAge, min(StudyDate) AS StudyDate, min(StudyTime) AS StudyTime,
       min(AccessionNumber) AS AccessionNumber, min(StudyID) AS StudyID,
       min(StudyDescription) AS StudyDescription,
       count(DISTINCT SeriesInstanceUID) AS n_series, count(*) AS n_instances,
       list_sort(list_distinct(list(Modality))) AS ModalitiesInStudy,
       min(Collection) AS Collection, min(collection_id) AS collection_id
FROM inst GROUP BY ALL ORDER BY StudyInstanceUID
"""

_VOLUMES = """
CREATE TABLE vol AS SELECT DISTINCT SeriesInstanceUID, store_path FROM volumes
WHERE store_path IS NOT NULL
"""


@dataclass(frozen=True)
class IndexView:
    """One loaded snapshot; ``cursor()`` gives a connection for the calling thread."""

    snapshot_id: str
    con: Any  # duckdb.DuckDBPyConnection (typed loosely: duckdb ships no stubs for mypy)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection = self.con.cursor()
        return cur

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` with bound ``params`` on a fresh cursor; rows as dicts."""
        cur = self.cursor()
        try:
            cur.execute(sql, params or [])
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            cur.close()


def load_view(store: Store, pointer: Pointer, exclude: frozenset[str]) -> IndexView:
    """Materialise the serving tables of one snapshot (seconds for ~10k series)."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    # Serving shares the machine with syncs and builds: a bounded DuckDB stays polite.
    con.execute("SET threads = 2")
    attach(con, store, pointer, ("instances", "series", "volumes"))
    con.execute("CREATE TABLE excluded AS SELECT unnest(?::VARCHAR[]) AS uid", [sorted(exclude)])
    for sql in (_INSTANCES, _SERIES, _STUDIES, _VOLUMES):
        con.execute(sql)
    for view in ("instances", "series", "volumes"):
        con.execute(f"DROP VIEW {view}")
    log.info("serving index snapshot %s (loaded in %.2fs)", pointer.snapshot_id,
             time.perf_counter() - started)
    return IndexView(pointer.snapshot_id, con)


class Snapshots:
    """The current :class:`IndexView`; re-reads the pointer at most every ``refresh`` seconds.

    A reload happens on the request thread that notices the new pointer; others keep
    answering from the previous view until the new one is ready.
    """

    def __init__(
        self, store: Store, *, refresh: float = 5.0,
        exclude: Callable[[], frozenset[str]] = frozenset,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store, self._refresh, self._exclude, self._clock = store, refresh, exclude, clock
        self._lock = threading.Lock()
        self._view = load_view(store, require_pointer(store), exclude())
        self._checked = clock()

    @property
    def store(self) -> Store:
        return self._store

    def current(self) -> IndexView:
        now = self._clock()
        if now - self._checked < self._refresh or not self._lock.acquire(blocking=False):
            return self._view
        try:
            self._checked = now
            pointer = read_pointer(self._store)
            if pointer is not None and pointer.snapshot_id != self._view.snapshot_id:
                self._view = load_view(self._store, pointer, self._exclude())
        except Exception:  # a broken new snapshot must not take the server down
            log.exception("cannot load the new index snapshot; still serving %s",
                          self._view.snapshot_id)
        finally:
            self._lock.release()
        return self._view
