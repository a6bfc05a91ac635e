"""``status``, ``verify`` and ``ledger rebuild``: read the ledger and the destination back."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirror.archive.port import HashedArchive
from mirror.errors import IntegrityError, ObjectNotFound, UsageError
from mirror.storage.port import Store
from mirror.sync.ledger import Ledger
from mirror.sync.lock import RunLock
from mirror.sync.plan import LedgerEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusReport:
    destination: str
    ledger_path: str
    by_state: dict[str, int]
    by_collection: dict[str, dict[str, int]]
    bytes_present: int
    watermarks: dict[str, str | None]
    last_run: dict[str, Any] | None
    last_success: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "ledger": self.ledger_path,
            "series": self.by_state,
            "collections": self.by_collection,
            "bytes_present": self.bytes_present,
            "watermarks": self.watermarks,
            "last_run": self.last_run,
            "last_success": self.last_success,
        }


def status(destination: str, ledger_path: Path) -> StatusReport:
    with _existing_ledger(ledger_path) as ledger:
        last, ok = ledger.last_run(), ledger.last_run(successful=True)
        return StatusReport(
            destination=destination,
            ledger_path=str(ledger_path),
            by_state=ledger.counts_by_state(),
            by_collection=ledger.counts_by_collection(),
            bytes_present=ledger.bytes_present(),
            watermarks={
                name: wm.isoformat() if wm else None for name, wm in ledger.watermarks().items()
            },
            last_run=_run_dict(last),
            last_success=_run_dict(ok),
        )


def _run_dict(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "run_id": row.run_id,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "mode": row.mode,
        "exit_code": row.exit_code,
        "counts": row.counts,
    }


def _existing_ledger(path: Path) -> Ledger:
    if not path.exists():
        raise UsageError(
            f"no ledger at {path}: run `mirror sync` first, or `mirror ledger rebuild`"
        )
    return Ledger.open(path)


# --- verify ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesProblem:
    series_uid: str
    path: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    deep: bool
    broken: tuple[SeriesProblem, ...] = field(default=())
    upstream_requests: int | None = None  # getMD5Hierarchy calls (None: not compared)
    # Broken series a sync took up while verify ran: reported, but left to that sync.
    superseded: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.broken

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "deep": self.deep,
            "upstream_requests": self.upstream_requests,
            "superseded": list(self.superseded),
            "ok": self.ok,
            "broken": [
                {"series_uid": b.series_uid, "path": b.path, "problems": list(b.problems)}
                for b in self.broken
            ],
        }


def verify(
    store: Store,
    ledger_path: Path,
    *,
    deep: bool,
    threads: int = 8,
    upstream: HashedArchive | None = None,
) -> VerifyReport:
    """Check every held series against its sidecar; broken ones go back to ``failed``.

    Marking them failed (not present) makes the next ``mirror sync`` fetch them again.
    "Held" is every series with a committed copy, whatever its state now: one that an
    earlier verify (or a failed update) marked ``failed`` is still visible to readers,
    so it is checked and reported on every run until a sync repairs it.

    With ``upstream``, each held copy is also compared with the archive's MD5 hierarchy
    (top-down, see :mod:`mirror.sync.hierarchy`): content the archive changed without a
    new release is reported like damage, and the next sync fetches it.
    """
    with _existing_ledger(ledger_path) as ledger:
        held = [e for e in ledger.entries().values() if _held(e)]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            found = list(pool.map(lambda e: _check(store, e, deep=deep), held))
        problems = {p.series_uid: p for p in found if p is not None}
        requests = None
        if upstream is not None:
            requests = _compare_upstream(store, ledger, held, upstream, problems)
        broken = tuple(problems[e.series_uid] for e in held if e.series_uid in problems)
        run_id = "verify-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        as_read = {e.series_uid: e for e in held}
        superseded: list[str] = []
        for problem in broken:
            detail = "; ".join(problem.problems)[:2000]
            if not ledger.mark_broken(as_read[problem.series_uid], run_id, detail):
                superseded.append(problem.series_uid)
    return VerifyReport(len(held), deep, broken, requests, tuple(superseded))


def _compare_upstream(
    store: Store,
    ledger: Ledger,
    held: list[LedgerEntry],
    upstream: HashedArchive,
    problems: dict[str, SeriesProblem],
) -> int:
    from mirror.sync.audit import held_hashes
    from mirror.sync.hierarchy import find_drift

    drift = find_drift(
        upstream.hierarchy_md5,
        held,
        lambda e: held_hashes(store, e),
        trust_collection_cache=False,  # the patient level is live upstream, the cache may lag
    )
    for uid, value in drift.adopted:
        ledger.set_md5_hierarchy(uid, value)
    notes = {uid: "content differs from the archive's (getMD5Hierarchy)" for uid in drift.drifted}
    notes |= {uid: "the archive has no MD5 hierarchy for it" for uid in drift.unknown}
    by_uid = {e.series_uid: e for e in held}
    for uid, note in notes.items():
        old = problems.get(uid)
        path = by_uid[uid].path
        problems[uid] = SeriesProblem(uid, path, (*(old.problems if old else ()), note))
    return drift.requests


def _held(entry: LedgerEntry) -> bool:
    return entry.state == "present" or (entry.state != "withdrawn" and bool(entry.content_hash))


def _check(store: Store, entry: LedgerEntry, *, deep: bool) -> SeriesProblem | None:
    from mirror.sync.audit import read_sidecar, verify_series

    try:
        sidecar = read_sidecar(store, entry.path)
    except ObjectNotFound:
        return SeriesProblem(entry.series_uid, entry.path, ("_series.json missing",))
    except IntegrityError as exc:
        return SeriesProblem(entry.series_uid, entry.path, (str(exc),))
    problems = verify_series(store, sidecar, deep=deep)
    if sidecar.series_uid != entry.series_uid:
        problems.append(f"sidecar names series {sidecar.series_uid}")
    elif entry.content_hash and sidecar.content_hash != entry.content_hash:
        problems.append("content differs from the ledger's record")
    return SeriesProblem(entry.series_uid, entry.path, tuple(problems)) if problems else None


# --- ledger rebuild ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RebuildReport:
    ledger_path: str
    series: int
    unreadable: tuple[str, ...]
    backup: str | None


def rebuild_ledger(store: Store, ledger_path: Path) -> RebuildReport:
    """Recreate the ledger from the destination's sidecars (the old file is kept aside)."""
    from mirror.sync.audit import iter_sidecars

    bad: list[str] = []
    count = 0
    # Same lock as sync: swapping the ledger under a running sync would lose its results.
    with RunLock(ledger_path.parent, "ledger-rebuild"):
        backup = _set_aside(ledger_path)
        with Ledger.open(ledger_path) as ledger:
            for sidecar in iter_sidecars(store, on_error=lambda path, exc: bad.append(path)):
                ledger.upsert_from_sidecar(sidecar)
                count += 1
    for path in bad:
        log.warning("unreadable sidecar in %s: series not recorded", path)
    return RebuildReport(str(ledger_path), count, tuple(bad), backup)


def _set_aside(ledger_path: Path) -> str | None:
    if not ledger_path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = ledger_path.with_name(f"{ledger_path.name}.{stamp}.bak")
    os.replace(ledger_path, backup)
    for suffix in ("-wal", "-shm"):
        _move_if_exists(Path(f"{ledger_path}{suffix}"), Path(f"{backup}{suffix}"))
    return str(backup)


def _move_if_exists(src: Path, dst: Path) -> None:
    if src.exists():
        os.replace(src, dst)
