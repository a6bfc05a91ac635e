"""From UIDs to committed files: index lookup, the commit check, safe opening through the Store.

Request paths never become file paths. A file is opened only when the current index
snapshot lists it, its key is a valid store key outside the reserved folders, it lies in the
folder of its series, and that folder's ``_series.json`` (the commit marker) names it. A
series moved to the attic or quarantined after the snapshot was built therefore answers 404.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar

from mirror.errors import IntegrityError, NotFoundError, ObjectNotFound
from mirror.layout import RESERVED_PREFIXES, SIDECAR_NAME, SeriesSidecar
from mirror.serve.snapshot import IndexView
from mirror.storage.keys import check_key
from mirror.storage.port import Store

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class InstanceRef:
    study: str
    series: str
    sop: str
    sop_class: str | None
    transfer_syntax: str
    file_path: str
    series_path: str
    file_size: int
    frames: int


class Lru(Generic[K, V]):
    """A small thread-safe LRU map (parsed headers, sidecars, rendered thumbnails)."""

    def __init__(self, size: int) -> None:
        self._size, self._data, self._lock = size, OrderedDict[K, V](), threading.Lock()

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # outside the lock: two threads may both build, both are correct
        self.put(key, value)
        return value


_SELECT = """SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID,
TransferSyntaxUID, file_path, series_path, file_size, coalesce(NumberOfFrames, 1) AS frames
FROM inst WHERE StudyInstanceUID = ?"""


def find_instances(
    view: IndexView, study: str, series: str | None = None, instance: str | None = None
) -> list[InstanceRef]:
    """The committed instances under a study/series/instance, in series and instance order."""
    sql, params = _SELECT, [study]
    if series is not None:
        sql += " AND SeriesInstanceUID = ?"
        params.append(series)
    if instance is not None:
        sql += " AND SOPInstanceUID = ?"
        params.append(instance)
    rows = view.rows(sql + " ORDER BY SeriesInstanceUID, InstanceNumber NULLS LAST, "
                     "SOPInstanceUID", params)
    if not rows:
        raise NotFoundError(_what(study, series, instance) + " is not in this mirror")
    return [InstanceRef(r["StudyInstanceUID"], r["SeriesInstanceUID"], r["SOPInstanceUID"],
                        r["SOPClassUID"], r["TransferSyntaxUID"] or "", r["file_path"],
                        r["series_path"], int(r["file_size"] or 0), int(r["frames"] or 1))
            for r in rows]


def _what(study: str, series: str | None, instance: str | None) -> str:
    if instance is not None:
        return f"instance {instance}"
    return f"series {series}" if series is not None else f"study {study}"


class Files:
    """Opens committed instance files of one store, checking the commit marker first."""

    def __init__(self, store: Store, cache_size: int = 4096) -> None:
        self.store = store
        self._names: Lru[tuple[str, str], frozenset[str]] = Lru(cache_size)

    def check(self, ref: InstanceRef, snapshot_id: str, *, fresh: bool = False) -> str:
        """The store key of ``ref`` if it is a committed file; else :class:`NotFoundError`.

        The commit marker is cached per snapshot for the small, frequent requests (frames,
        metadata); ``fresh`` re-reads it, for streams that must not break halfway.
        """
        key = check_key(ref.file_path)
        folder, _, name = key.rpartition("/")
        if key.split("/", 1)[0] in RESERVED_PREFIXES or folder != ref.series_path:
            raise NotFoundError(f"instance {ref.sop} is not in a committed series folder")
        if fresh:
            self._names.put((snapshot_id, folder), self._committed(folder))
        names = self._names.get_or((snapshot_id, folder), lambda: self._committed(folder))
        if name not in names:
            raise NotFoundError(f"instance {ref.sop} is not in a committed series")
        return key

    def _committed(self, folder: str) -> frozenset[str]:
        try:
            sidecar = SeriesSidecar.from_json(self.store.get_bytes(f"{folder}/{SIDECAR_NAME}"))
        except (ObjectNotFound, IntegrityError):
            return frozenset()  # moved aside, never committed, or damaged: not served
        return frozenset(i.name for i in sidecar.instances) if sidecar.path == folder \
            else frozenset()

    def open(self, ref: InstanceRef, snapshot_id: str) -> BinaryIO:
        key = self.check(ref, snapshot_id)
        try:
            return self.store.open_read(key)
        except ObjectNotFound as exc:
            raise NotFoundError(f"instance {ref.sop} is gone from the store") from exc

    def chunks(self, ref: InstanceRef, snapshot_id: str, size: int = 1 << 20) -> Any:
        """The file's bytes in ``size`` pieces (a generator; the file closes at the end)."""
        with self.open(ref, snapshot_id) as fh:
            while chunk := fh.read(size):
                yield chunk
