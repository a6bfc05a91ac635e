"""One sync run on the driver: list, plan, fetch on Dask, record, withdraw, report.

The driver is the only writer of the ledger: it marks series ``in_progress`` before submit
and records each result in its own transaction as it arrives, so a crash at any point
leaves a ledger the next run can resume from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirror import __version__
from mirror.archive.port import HashedArchive, IndexedSource, SeriesRecord, Source
from mirror.config import INITIAL_DOWNLOADS, ClusterConfig, Selection, SyncConfig
from mirror.errors import (
    EXIT_DESTINATION,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    MirrorError,
    ObjectNotFound,
)
from mirror.storage.port import Store
from mirror.sync.adaptive import AdaptiveSettings
from mirror.sync.audit import committed_unrecorded, held_damage, held_hashes
from mirror.sync.columnar import plan_columnar
from mirror.sync.engine import Engine, EngineOptions, EngineReport, make_units
from mirror.sync.hierarchy import DriftReport, find_drift, without_hierarchy
from mirror.sync.ledger import Ledger, utcnow
from mirror.sync.listing import Listing, gather
from mirror.sync.manifest import write_text_atomic
from mirror.sync.plan import HeldSlice, LedgerEntry, PlanItem, SyncPlan, plan_slice
from mirror.sync.report import Failure, RunSummary

if TYPE_CHECKING:
    from mirror.sync.cluster import ClusterHandle, EarlyCluster

log = logging.getLogger(__name__)

# What a sync task needs on a worker: imported as each embedded worker starts, in the
# background, instead of by the first task (about 0.5-1 s of a first mirror's start).
WORKER_PRELOAD = ("mirror.sync.task",)


@dataclass(frozen=True, slots=True)
class Progress:
    """One finished series, reported to the CLI's progress display."""

    done: int
    total: int
    series_uid: str
    outcome: str  # committed | unchanged | failed
    bytes_downloaded: int


ProgressFn = Callable[[Progress], None]


@dataclass(slots=True)
class Tally:
    """Mutable per-run counters, owned by one SyncRun (driver only)."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("planned", "downloaded", "updated", "unchanged", "withdrawn", "failed", "verified"),
            0,
        )
    )
    bytes_downloaded: int = 0
    bytes_written: int = 0
    retries: int = 0
    failures: dict[str, Failure] = field(default_factory=dict)
    done: int = 0
    changed_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunContext:
    config: SyncConfig
    archive: Source
    store: Store
    ledger: Ledger
    run_id: str
    today: date
    progress: ProgressFn | None = None
    should_stop: Callable[[], bool] = lambda: False
    fetch_settings: Any = None


def adaptive_settings(slots: int, cluster: ClusterConfig) -> AdaptiveSettings:
    """Start at today's 16 series at once (or fewer slots) and grow up to --max-connections,
    or to every download slot the cluster has."""
    ceiling = min(slots, cluster.max_connections or slots)
    return AdaptiveSettings(initial=min(INITIAL_DOWNLOADS, ceiling), maximum=ceiling)


def _known_collections(ledger: Ledger) -> dict[str, date | None]:
    """Every collection the mirror holds, with its watermark (None: list it in full), as
    ``gather`` reads them: held collections without a watermark are never incremental."""
    known: dict[str, date | None] = dict.fromkeys(ledger.mirrored_collections())
    return known | ledger.watermarks()


def _version_tokens(the_plan: SyncPlan, carried: Any) -> tuple[int, int]:
    """(unchanged series, those of them listed without a version token)."""
    records = [i.record for i in the_plan.by_outcome("unchanged") if i.record is not None]
    unchanged, blind = len(records), sum(1 for r in records if not r.version_token)
    if carried is not None and carried.plan.carried:
        import pyarrow.compute as pc

        tokens = carried.listing.column("version_token").take(carried.rows)
        has = pc.fill_null(pc.greater(pc.utf8_length(tokens), 0), False)
        unchanged += len(tokens)
        blind += len(tokens) - int(pc.sum(has).as_py() or 0)
    return unchanged, blind


def expects_downloads(selection: Selection, known: Mapping[str, date | None]) -> bool:
    """A first mirror of some collection (or a manifest) will download: worth starting the
    cluster while listing. A run over held collections usually has little or nothing to
    fetch, and a nightly with nothing new should not start worker processes at all."""
    if selection.manifest_uids is not None:
        return True
    if not selection.collections:
        return not known
    return any(c not in known for c in selection.collections)


class SyncRun:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.tally = Tally()
        self.items: dict[str, PlanItem] = {}
        self.cluster_info: dict[str, Any] = {"kind": ctx.config.cluster.kind}
        self.started_at = utcnow()
        self._t0 = time.monotonic()
        self.listing: Listing | None = None
        self.slots = 1
        self.drift: DriftReport | None = None
        self.reconciled: list[str] = []
        self._early: EarlyCluster | None = None

    # --- the run -------------------------------------------------------------------------

    def execute(self, blocked: MirrorError | None = None) -> RunSummary:
        """Run; ``blocked`` (e.g. the destination refused the lease) records a run that
        ends at once with that error's exit code."""
        cfg = self.ctx.config
        if not cfg.dry_run:
            self.ctx.ledger.begin_run(self.ctx.run_id, cfg.mode, self.started_at)
        try:
            if blocked is not None:
                raise blocked
            exit_code, the_plan = self._body()
            error = ""
        except MirrorError as exc:
            log.error("sync aborted: %s", exc)
            exit_code, the_plan, error = exc.exit_code, None, f"{type(exc).__name__}: {exc}"
        finally:
            if self._early is not None:  # opened for work the plan did not have
                self._early.close()
        return self._finish(exit_code, the_plan, error)

    def _body(self) -> tuple[int, SyncPlan]:
        cfg, ledger = self.ctx.config, self.ctx.ledger
        # Only the rows this run needs leave SQLite: pending ones, then the listing's slice.
        if not cfg.dry_run:
            self._reconcile(ledger.pending_entries())
        known = _known_collections(ledger)
        if not cfg.dry_run and expects_downloads(cfg.selection, known):
            from mirror.sync.cluster import EarlyCluster

            self._early = EarlyCluster(cfg.cluster, self._preload())
        self.listing = gather(
            self.ctx.archive,
            ledger.pending_entries(),
            known,
            cfg.selection,
            full=cfg.full,
            overlap_days=cfg.overlap_days,
        )
        planner = self._planner(self.listing)
        the_plan, carried = planner(frozenset())
        suspect = self._audit(the_plan, carried)
        if suspect:
            the_plan, _ = planner(suspect)
        # The plan holds what it needs: the listing table may go before the downloads start.
        self.listing = dataclasses.replace(self.listing, table=None)
        log.info("plan: %s, %d bytes to fetch", the_plan.counts, the_plan.bytes_to_fetch)
        if cfg.dry_run:
            return EXIT_OK, the_plan
        if self.ctx.should_stop():
            return EXIT_INTERRUPTED, the_plan
        if not self.listing.scope.filtered:
            ledger.remember_collections(self.listing.collections)
        self._announce()
        self._reject(the_plan)
        self._unlisted(self.listing.not_found)
        self.tally.counts["unchanged"] += the_plan.counts["unchanged"]
        report = self._fetch(the_plan.to_fetch)
        if report is not None and report.fatal is not None:
            return EXIT_DESTINATION, the_plan
        if report is not None and report.stopped:
            return EXIT_INTERRUPTED, the_plan
        self._withdraw(the_plan.by_outcome("withdrawn"))
        return (EXIT_PARTIAL if self.tally.failures else EXIT_OK), the_plan

    def _planner(self, listing: Listing) -> Callable[[frozenset[str]], tuple[SyncPlan, Any]]:
        """How this run plans (called again with the series the audits found suspect): a
        full listing is one columnar join against the ledger's columns, whose unchanged
        series come back as a table of UIDs (:mod:`mirror.sync.columnar`); a nightly plans
        its few records against the rows they name (``held_slice``)."""
        cfg, ledger = self.ctx.config, self.ctx.ledger
        if listing.table is None:
            held = ledger.held_slice(listing.records, listing.scope)
            return lambda drifted: (self._plan(held, drifted), None)
        from mirror.archive.listing_table import records_table

        remote = listing.table
        if listing.records:
            import pyarrow as pa

            remote = pa.concat_tables([remote, records_table(listing.records)])
        columns = ledger.held_columns(listing.records, listing.scope)

        def planned(drifted: frozenset[str]) -> tuple[SyncPlan, Any]:
            result = plan_columnar(
                remote, columns, ledger.entries_for, scope=listing.scope,
                max_delete=cfg.max_delete, template=cfg.layout, delete=cfg.delete,
                drifted=drifted, allow_empty=frozenset(cfg.allow_empty),
            )  # fmt: skip
            return result.plan, result

        return planned

    def _plan(self, held: HeldSlice, drifted: frozenset[str] = frozenset()) -> SyncPlan:
        cfg, listing = self.ctx.config, self.listing
        assert listing is not None
        return plan_slice(
            listing.records,
            held,
            scope=listing.scope,
            max_delete=cfg.max_delete,
            template=cfg.layout,
            delete=cfg.delete,
            drifted=drifted,
            allow_empty=frozenset(cfg.allow_empty),
        )

    def _audit(self, the_plan: SyncPlan, carried: Any) -> frozenset[str]:
        """Series the listing calls unchanged that must be fetched again all the same: held
        copies damaged on local disk, and (``--full``) content the archive's MD5 hierarchy
        says changed. The unchanged series are read from the ledger a few collections at a
        time (``carried``: the columnar plan's table of them), never all at once."""
        local = self.ctx.store.capabilities.local
        archive = self.ctx.archive
        hashed = archive if isinstance(archive, HashedArchive) else None
        drift = self.ctx.config.full and hashed is not None
        if self.ctx.config.full and not drift:
            warn, message = without_hierarchy(*_version_tokens(the_plan, carried))
            log.log(logging.WARNING if warn else logging.INFO, message)
        if not (local or drift):
            return frozenset()
        suspect: set[str] = set()
        reports: list[DriftReport] = []
        for batch in self._unchanged_batches(the_plan, carried):
            if local:
                suspect |= self._damaged(batch)
            if drift:
                assert hashed is not None
                reports.append(find_drift(hashed.hierarchy_md5, batch, self._candidates))
        if drift:
            suspect |= self._drift_found(merge_drift(reports)).drifted
        return frozenset(suspect)

    def _unchanged_batches(self, the_plan: SyncPlan, carried: Any) -> Iterator[list[LedgerEntry]]:
        """The held entries of the unchanged series, whole collections per batch (the drift
        walk hashes a collection from all its series), about AUDIT_BATCH series each."""
        itemised = [i.held for i in the_plan.by_outcome("unchanged") if i.held is not None]
        if itemised:
            yield itemised
        if carried is None or not carried.plan.carried:
            return
        table = carried.unchanged.sort_by("collection")
        uids = table.column("series_uid")
        start = 0
        for end in _batch_ends(table.column("collection").to_pylist(), AUDIT_BATCH):
            found = self.ctx.ledger.entries_for(uids.slice(start, end - start).to_pylist())
            yield list(found.values())
            start = end

    def _drift_found(self, report: DriftReport) -> DriftReport:
        self.drift = report
        if not self.ctx.config.dry_run:
            for uid, value in report.adopted:
                self.ctx.ledger.set_md5_hierarchy(uid, value)
        log.info(
            "md5 hierarchy: %d requests, %d series changed without a new release",
            report.requests,
            len(report.drifted),
        )
        if report.unknown:
            log.warning(
                "the archive has no MD5 hierarchy for %d listed series", len(report.unknown)
            )
        return report

    def _damaged(self, unchanged: Sequence[LedgerEntry]) -> set[str]:
        """Held copies on local disk that are not as their sidecar says (missing, other
        size, strays): fetching them again repairs them. Object stores are left to
        ``verify``: their objects are put whole, with their MD5."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = pool.map(lambda e: (e, held_damage(self.ctx.store, e)), unchanged)
            damaged = [(e, problems) for e, problems in found if problems]
        for entry, problems in damaged:
            log.warning("series %s: held copy damaged (%s); fetching it again",
                        entry.series_uid, "; ".join(problems[:3]))  # fmt: skip
        return {e.series_uid for e, _ in damaged}

    def _candidates(self, entry: LedgerEntry) -> frozenset[str]:
        return held_hashes(self.ctx.store, entry)

    def _reconcile(self, held: dict[str, LedgerEntry]) -> None:
        """Record series an earlier run committed but never recorded (it was stopped or
        died while tasks still ran): their sidecars are the proof. They count as changed
        in this run's ``--changed-files``, so downstream consumers never miss them."""
        # Only series submitted without a recorded outcome (attempts is reset on commit).
        pending = [e for e in held.values() if e.attempts > 0 and e.state != "withdrawn"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda e: committed_unrecorded(self.ctx.store, e), pending))
        for entry, sidecar in zip(pending, found, strict=True):
            if sidecar is None:
                continue
            changed = sidecar.content_hash != entry.content_hash
            self.ctx.ledger.record_reconciled(sidecar, self.ctx.run_id, changed=changed)
            self.reconciled.append(entry.series_uid)
            if changed:
                self.tally.changed_paths.append(sidecar.path)
            log.info("series %s: recorded from its sidecar (committed by %s)",
                     entry.series_uid, sidecar.run_id)  # fmt: skip

    def _announce(self) -> None:
        """Write ``_runs/<run_id>.json`` (status running) first: proves the destination is
        writable before any work, and tells operators a run is under way."""
        cfg = self.ctx.config
        marker = {
            "run_id": self.ctx.run_id,
            "status": "running",
            "mode": cfg.mode,
            "started_at": self.started_at,
            "destination": self.ctx.store.url,
        }
        self.ctx.store.put_bytes(
            f"_runs/{self.ctx.run_id}.json", json.dumps(marker, indent=1).encode()
        )

    def _reject(self, the_plan: SyncPlan) -> None:
        for rej in the_plan.rejected:
            log.warning("series %r rejected: %s", rej.series_uid, rej.reason)
            self._fail(
                Failure(rej.series_uid, rej.collection, "IntegrityError", rej.reason, 0, False)
            )

    def _unlisted(self, uids: Sequence[str]) -> None:
        """Manifest UIDs the archive does not list: nothing to fetch, but the run asked for
        them, so it ends partial (exit 1) and each is a failure in the summary."""
        for uid in uids:
            log.warning("manifest series %s is not listed by the archive", uid)
            message = "the manifest names it but the archive does not list it"
            self._fail(Failure(uid, "", "NotListedUpstream", message, 0, False))

    # --- fetching ------------------------------------------------------------------------

    def _fetch(self, todo: Sequence[PlanItem]) -> EngineReport | None:
        if not todo:
            return None
        self.items = {i.series_uid: i for i in todo}
        self.tally.counts["planned"] = len(todo)
        with self._cluster() as handle:
            self.cluster_info = handle.describe()
            self.slots = handle.download_slots(self.ctx.config.cluster.http_slots)
            engine = Engine(
                handle.client,
                self.ctx.archive,
                self.ctx.store,
                self._settings(),
                options=EngineOptions(
                    window=max(4, 2 * handle.threads),
                    use_resources=handle.use_resources,
                    max_connections=self.ctx.config.cluster.max_connections,
                    drain_seconds=self.ctx.config.drain_seconds,
                    adaptive=adaptive_settings(self.slots, self.ctx.config.cluster),
                ),
                busy=handle.cpu_probe(),
            )
            report = self._pass(engine, todo, 1)
            retry = [self.items[uid] for uid, f in self.tally.failures.items() if f.retryable]
            if retry and report.fatal is None and not report.stopped and self.ctx.config.retry_pass:
                log.info("retry pass for %d series", len(retry))
                self.tally.retries += len(retry)
                report = self._pass(engine, retry, 2)
            self.cluster_info["concurrency"] = report.concurrency
        return report

    def _preload(self) -> tuple[str, ...]:
        """The task code and the modules of both adapters: the Engine's first scatter hands
        each worker the pickled source and Store, whose classes it must import."""
        adapters = (type(self.ctx.archive).__module__, type(self.ctx.store).__module__)
        # Only our own modules: a worker that cannot import a preload never starts, and a
        # library caller's adapter may live in a script (__main__) or a test module.
        ours = (m for m in adapters if m.startswith("mirror."))
        return tuple(dict.fromkeys((*WORKER_PRELOAD, *ours)))

    @contextmanager
    def _cluster(self) -> Iterator[ClusterHandle]:
        """The cluster started early for this run, or one started now (and waited for)."""
        from mirror.sync.cluster import EarlyCluster

        early, self._early = self._early, None
        if early is None:
            early = EarlyCluster(self.ctx.config.cluster, self._preload())
        try:
            yield early.handle()
        finally:
            early.close()

    def _settings(self) -> Any:
        if self.ctx.fetch_settings is not None:
            return self.ctx.fetch_settings
        from mirror.sync.task import FetchSettings

        return FetchSettings(scratch_dir=self.ctx.config.scratch_dir)

    def _pass(self, engine: Engine, items: Sequence[PlanItem], pass_no: int) -> EngineReport:
        from mirror.sync.task import SeriesTask

        tasks = [
            SeriesTask(i.record, i.path, i.next_version, self.ctx.run_id)  # type: ignore[arg-type]
            for i in items
        ]
        self.ctx.ledger.mark_in_progress(
            [(i.record, i.path) for i in items if i.record is not None], self.ctx.run_id
        )
        self._quarantine([i for i in items if i.held and i.held.last_error_class == "VerifyFailed"])
        units = make_units(tasks, self.ctx.run_id, pass_no=pass_no, parallelism=self.slots)
        report = engine.run(units, self._on_result, self._on_error, self.ctx.should_stop)
        # Every try of a requeued series was followed by another.
        self.tally.retries += report.requeued_attempts
        self.tally.bytes_downloaded += report.requeued_bytes
        return report

    def _quarantine(self, items: Sequence[PlanItem]) -> None:
        """Move copies ``verify`` found damaged to the attic, so the task fetches afresh
        instead of trusting a sidecar whose files no longer match it."""
        for item in items:
            attic = f"_attic/{self.ctx.run_id}/{item.path}"
            if self._move_aside(item.path, attic):
                log.info("series %s: damaged copy moved to %s", item.series_uid, attic)

    def _move_aside(self, path: str, attic: str) -> bool:
        """Move a series folder to the attic; False if there was nothing there."""
        try:
            self.ctx.store.move_prefix(path, attic)
        except ObjectNotFound:
            return False
        return True

    def _on_result(self, task: Any, result: Any) -> None:
        item = self.items[result.series_uid]
        record: SeriesRecord = task.record
        self.tally.bytes_downloaded += result.bytes_downloaded
        self.tally.retries += max(0, result.attempts - 1)
        if result.outcome == "failed" or result.sidecar is None:
            self.ctx.ledger.record_failed(
                record, item.path, self.ctx.run_id, result.error_class, result.message
            )
            self._fail(
                Failure(
                    record.series_uid,
                    record.collection,
                    result.error_class,
                    result.message,
                    result.attempts,
                    result.retryable,
                )
            )
        else:
            self._committed(item, record, result)
        self._progress(result.series_uid, result.outcome, result.bytes_downloaded)

    def _committed(self, item: PlanItem, record: SeriesRecord, result: Any) -> None:
        changed = result.outcome == "committed"
        self.ctx.ledger.record_committed(record, result.sidecar, self.ctx.run_id, changed=changed)
        self.tally.failures.pop(record.series_uid, None)
        self.tally.counts["verified"] += 1
        if not changed:
            self.tally.counts["unchanged"] += 1
        elif item.held is not None and item.held.content_hash:
            self.tally.counts["updated"] += 1
        else:
            self.tally.counts["downloaded"] += 1
        if changed:
            self.tally.bytes_written += result.sidecar.total_size
            self.tally.changed_paths.append(result.sidecar.path)

    def _on_error(self, task: Any, error_class: str, message: str, retryable: bool) -> None:
        record: SeriesRecord = task.record
        item = self.items[record.series_uid]
        self.ctx.ledger.record_failed(record, item.path, self.ctx.run_id, error_class, message)
        self._fail(
            Failure(record.series_uid, record.collection, error_class, message, 0, retryable)
        )
        self._progress(record.series_uid, "failed", 0)

    def _fail(self, failure: Failure) -> None:
        self.tally.failures[failure.series_uid] = failure

    def _progress(self, uid: str, outcome: str, nbytes: int) -> None:
        self.tally.done += 1
        if self.ctx.progress is not None:
            total = self.tally.counts["planned"]
            self.ctx.progress(Progress(self.tally.done, total, uid, outcome, nbytes))

    # --- withdrawals ---------------------------------------------------------------------

    def _withdraw(self, items: Sequence[PlanItem]) -> None:
        # Deletions come last, after every download landed (Debian ftpsync's ordering).
        for item in items:
            detail = "tombstone"
            if self.ctx.config.delete:
                attic = f"_attic/{self.ctx.run_id}/{item.path}"
                moved = self._move_aside(item.path, attic)
                detail = f"moved to {attic}" if moved else "nothing to move"
            self.ctx.ledger.record_withdrawn(
                item.series_uid, self.ctx.run_id, detail, gone=self.ctx.config.delete
            )
            if self.ctx.config.delete:
                self.tally.changed_paths.append(item.path)
            self.tally.counts["withdrawn"] += 1

    # --- wrap-up -------------------------------------------------------------------------

    def _write_changed_files(self) -> str | None:
        """``--changed-files``: series folders this run wrote or moved (for rsync/diodes)."""
        target = self.ctx.config.changed_files
        if not target or self.ctx.config.dry_run:
            return None
        lines = "".join(f"{path}\n" for path in sorted(set(self.tally.changed_paths)))
        write_text_atomic(Path(target), lines)
        return target

    def _finish(self, exit_code: int, the_plan: SyncPlan | None, error: str) -> RunSummary:
        cfg, listing = self.ctx.config, self.listing
        self.tally.counts["failed"] = len(self.tally.failures)
        before = listing.watermark_before if listing else None
        after = None
        if not cfg.dry_run:
            after = self.ctx.ledger.finish_run(
                self.ctx.run_id,
                exit_code=exit_code,
                counts=self.tally.counts,
                watermark_before=before,
                advance=listing.advance if listing else (),
                run_date=self.ctx.today,
            )
        return RunSummary(
            run_id=self.ctx.run_id,
            tool_version=__version__,
            started_at=self.started_at,
            finished_at=utcnow(),
            duration_s=round(time.monotonic() - self._t0, 3),
            mode=cfg.mode,
            source={"api_base": self.ctx.archive.url, "api_version": "v4"},
            destination=self.ctx.store.url,
            cluster=self.cluster_info,
            exit_code=exit_code,
            watermark={
                "before": before.isoformat() if before else None,
                "after": after.isoformat() if after else None,
            },
            counts=dict(self.tally.counts),
            bytes={"downloaded": self.tally.bytes_downloaded, "written": self.tally.bytes_written},
            retries=self.tally.retries,
            failures=tuple(self.tally.failures.values()),
            plan=the_plan.to_dict() if cfg.dry_run and the_plan else None,
            error=error,
            changed_files_path=self._write_changed_files(),
            extra=self._extra(),
        )

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if isinstance(self.ctx.archive, IndexedSource):  # IDC: the release is the watermark
            extra["idc_release"] = self.ctx.archive.release
        if self.listing and self.listing.not_found:
            extra["not_found"] = list(self.listing.not_found)
        if self.drift is not None:
            extra["md5_hierarchy"] = self.drift.to_dict()
        if self.reconciled:
            extra["reconciled"] = sorted(self.reconciled)
        return extra


AUDIT_BATCH = 50_000  # unchanged series read back from the ledger per audit batch


def _batch_ends(collections: list[str], size: int) -> Iterator[int]:
    """End offsets of batches of a sorted collection column: whole collections, a new batch
    once ``size`` rows are gathered."""
    start = 0
    for i in range(1, len(collections) + 1):
        boundary = i == len(collections) or collections[i] != collections[i - 1]
        if (boundary and i - start >= size) or i == len(collections):
            yield i
            start = i


def merge_drift(reports: Sequence[DriftReport]) -> DriftReport:
    """One report for walks made batch by batch (each over whole collections)."""
    return DriftReport(
        frozenset().union(*(r.drifted for r in reports)),
        frozenset().union(*(r.unknown for r in reports)),
        tuple(a for r in reports for a in r.adopted),
        sum(r.requests for r in reports),
    )
