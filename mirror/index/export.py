"""Cohort export: pick series with SQL over the index, write a manifest or copy the files.

``--format manifest`` writes NBIA's ``.tcia`` format (readable by ``mirror sync --manifest``
and by the NBIA Data Retriever). ``--format dicom`` copies each selected series (files, then
its sidecar last, every file checked against the sidecar's MD5) into another destination,
so the copy is itself a valid mirror. New formats register in :data:`EXPORTERS`
(``format -> function(source store, selection, target) -> ExportReport``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mirror.errors import ChecksumMismatch, UsageError
from mirror.index.views import connect, fetch, open_dest, run_sql
from mirror.layout import SIDECAR_NAME, SeriesSidecar, normalize_md5
from mirror.storage.port import Store

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Selected:
    series_uid: str
    series_path: str


@dataclass(frozen=True, slots=True)
class ExportReport:
    format: str
    target: str
    series: int  # series selected
    copied: int = 0  # series written (dicom)
    skipped: int = 0  # series already present with the same content (dicom)
    files: int = 0
    bytes: int = 0


Exporter = Callable[[Store, list[Selected], str], ExportReport]


def select(dest: str | Store, where: str, *, snapshot: str | None = None) -> list[Selected]:
    """Series of the index matching the SQL predicate ``where`` (over the ``series`` view)."""
    if not where.strip():
        raise UsageError("--where needs a SQL predicate, e.g. \"Modality = 'CT'\"")
    con = connect(dest, snapshot=snapshot, tables=("series",))
    try:
        # The predicate is the user's own SQL by design (same power as `mirror query`); the
        # newline keeps a trailing `--` comment from swallowing the closing parenthesis.
        sql = (f"SELECT SeriesInstanceUID, series_path FROM series WHERE ({where}\n) "  # noqa: S608
               "ORDER BY collection_id, PatientID, StudyInstanceUID, SeriesInstanceUID")
        table = fetch(run_sql(con, sql))
    finally:
        con.close()
    return [Selected(u, p) for u, p in zip(table.column(0).to_pylist(),
                                             table.column(1).to_pylist(), strict=True)]


def export_manifest(store: Store, selection: list[Selected], target: str) -> ExportReport:
    from mirror.sync.manifest import write_manifest

    if "://" in target:
        raise UsageError("--format manifest writes a local .tcia file: give a path")
    write_manifest([s.series_uid for s in selection], target)
    return ExportReport("manifest", target, len(selection))


def _copy_file(src: Store, dst: Store, key: str, md5: str) -> None:
    """Copy one object through a local temp file, proving its MD5 before it lands."""
    digest = hashlib.md5()
    fd, tmp = tempfile.mkstemp(prefix="mirror-export-")
    try:
        with os.fdopen(fd, "wb") as out, src.open_read(key) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != normalize_md5(md5):
            raise ChecksumMismatch(f"{src.url}/{key}: md5 {digest.hexdigest()} != {md5}")
        dst.put_file(tmp, key, md5=digest.hexdigest())
    finally:
        os.unlink(tmp)


def _target_sidecar(dst: Store, key: str) -> SeriesSidecar | None:
    if not dst.exists(key):
        return None
    return SeriesSidecar.from_json(dst.get_bytes(key))


def copy_series(src: Store, dst: Store, series: Selected) -> tuple[bool, int, int]:
    """Copy one committed series; returns ``(copied, files, bytes)``.

    An older copy in the target first loses its sidecar (so it stops counting as committed),
    files not in the new manifest are removed, and the sidecar is written last.
    """
    key = f"{series.series_path}/{SIDECAR_NAME}"
    raw = src.get_bytes(key)
    sidecar = SeriesSidecar.from_json(raw)
    existing = _target_sidecar(dst, key)
    if existing is not None and existing.content_hash == sidecar.content_hash:
        return False, 0, 0
    if existing is not None:
        dst.delete(key)
    for entry in sidecar.instances:
        _copy_file(src, dst, f"{sidecar.path}/{entry.name}", entry.md5)
    wanted = {f"{sidecar.path}/{e.name}" for e in sidecar.instances}
    for stale in [k for k in dst.list(sidecar.path + "/") if k not in wanted]:
        dst.delete(stale)
    dst.put_bytes(key, raw)
    return True, sidecar.image_count, sidecar.total_size


def export_dicom(
    store: Store, selection: list[Selected], target: str, *, threads: int = 4
) -> ExportReport:
    dst = open_dest(target)
    if dst.url.rstrip("/") == store.url.rstrip("/"):
        raise UsageError("--to must differ from --dest")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = list(pool.map(lambda s: copy_series(store, dst, s), selection))
    copied = [d for d in done if d[0]]
    return ExportReport("dicom", dst.url, len(selection), len(copied), len(done) - len(copied),
                        sum(d[1] for d in copied), sum(d[2] for d in copied))


EXPORTERS: dict[str, Exporter] = {"manifest": export_manifest, "dicom": export_dicom}


def export_cohort(
    dest: str | Store, where: str, target: str, *, fmt: str = "manifest",
    snapshot: str | None = None,
) -> ExportReport:
    """Select series with ``where`` and export them to ``target`` in format ``fmt``."""
    exporter = EXPORTERS.get(fmt)
    if exporter is None:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORTERS)}")
    store = open_dest(dest)
    selection = select(store, where, snapshot=snapshot)
    if not selection:
        raise UsageError(f"no series match: {where}")
    log.info("exporting %d series as %s to %s", len(selection), fmt, target)
    return exporter(store, selection, target)
