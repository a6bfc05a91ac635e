"""The pure planner: what the archive lists + what the ledger holds -> one outcome per series.

No I/O here. ``sync``, ``status`` and the reports share the outcome vocabulary below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Literal

from mirror.archive.port import SeriesRecord
from mirror.errors import IntegrityError, SafetyAbort, UsageError
from mirror.guards import DEFAULT_MAX_DELETE, MaxDelete
from mirror.layout import DEFAULT_TEMPLATE, series_path

Outcome = Literal["new", "changed", "unchanged", "withdrawn", "retry"]
State = Literal["planned", "in_progress", "present", "failed", "withdrawn"]
OUTCOMES: tuple[Outcome, ...] = ("new", "changed", "unchanged", "withdrawn", "retry")
PENDING_STATES = frozenset({"planned", "in_progress", "failed"})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the ledger knows about one series (the planner's view of a ``series`` row)."""

    series_uid: str
    collection: str
    patient_id: str
    study_uid: str
    path: str
    state: State
    fingerprint: tuple[int, int, str, str] = (0, 0, "", "")
    modality: str = ""
    content_hash: str = ""
    series_version: int = 0
    n_instances: int = 0
    bytes: int = 0
    attempts: int = 0
    last_error_class: str = ""
    md5_hierarchy: str = ""  # the archive's getMD5Hierarchy series hash for the held copy


@dataclass(frozen=True, slots=True)
class PlanScope:
    """Which series this run is about.

    ``listed`` names the collections whose complete listing is in ``remote``: only there can
    a held series missing upstream be called withdrawn. The filters narrow everything.
    """

    collections: frozenset[str] | None = None  # None: every collection in remote or held
    listed: frozenset[str] = frozenset()
    modalities: frozenset[str] = frozenset()
    patients: frozenset[str] = frozenset()
    series_uids: frozenset[str] | None = None  # a manifest's UIDs

    @property
    def filtered(self) -> bool:
        """True when only part of each collection is in scope (no watermark advance)."""
        return bool(self.modalities or self.patients or self.series_uids is not None)

    def admits(self, collection: str, patient_id: str, modality: str, uid: str) -> bool:
        return (
            (self.collections is None or collection in self.collections)
            and (not self.modalities or modality in self.modalities)
            and (not self.patients or patient_id in self.patients)
            and (self.series_uids is None or uid in self.series_uids)
        )


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One series to act on (or to leave alone, for ``unchanged``)."""

    series_uid: str
    outcome: Outcome
    path: str
    record: SeriesRecord | None  # None only for ``withdrawn``
    held: LedgerEntry | None

    @property
    def collection(self) -> str:
        return self.record.collection if self.record else self.held.collection  # type: ignore[union-attr]

    @property
    def expected_bytes(self) -> int:
        return self.record.file_size if self.record else 0

    @property
    def next_version(self) -> int:
        return 1 if self.held is None else self.held.series_version + 1


@dataclass(frozen=True, slots=True)
class Rejected:
    """A listing row we refuse to act on (bad UID in the listing)."""

    series_uid: str
    collection: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncPlan:
    items: tuple[PlanItem, ...]
    rejected: tuple[Rejected, ...] = ()
    deferred: tuple[str, ...] = ()  # pending in the ledger but not in this run's listing
    scope: PlanScope = field(default_factory=PlanScope)
    # Unchanged series counted but not itemised (the columnar plan: no object per series
    # that needs nothing); ``by_outcome("unchanged")`` holds only the itemised ones.
    carried: int = 0

    def by_outcome(self, outcome: Outcome) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.outcome == outcome)

    @property
    def to_fetch(self) -> tuple[PlanItem, ...]:
        return tuple(i for i in self.items if i.outcome in ("new", "changed", "retry"))

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(i.outcome for i in self.items)
        counts: dict[str, int] = {o: tally.get(o, 0) for o in OUTCOMES}
        counts["unchanged"] += self.carried
        counts["rejected"] = len(self.rejected)
        return counts

    @property
    def bytes_to_fetch(self) -> int:
        """Upper bound from the listings' FileSize (DICOM bytes before zipping)."""
        return sum(i.expected_bytes for i in self.to_fetch)

    def to_dict(self) -> dict[str, object]:
        return {
            "counts": self.counts,
            "bytes_to_fetch": self.bytes_to_fetch,
            "series": [
                {"series_uid": i.series_uid, "outcome": i.outcome, "path": i.path}
                for i in self.items
                if i.outcome != "unchanged"
            ],
            "rejected": [{"series_uid": r.series_uid, "reason": r.reason} for r in self.rejected],
        }


def plan(
    remote: Sequence[SeriesRecord],
    held: Mapping[str, LedgerEntry],
    *,
    scope: PlanScope,
    max_delete: MaxDelete = DEFAULT_MAX_DELETE,
    template: str = DEFAULT_TEMPLATE,
    delete: bool = False,
    drifted: frozenset[str] = frozenset(),
    allow_empty: frozenset[str] = frozenset(),
) -> SyncPlan:
    """Give every series in scope exactly one outcome; raise SafetyAbort on suspicious input.

    With ``delete``, tombstones (withdrawn earlier, files still visible) are withdrawn
    again so the run moves them to the attic, within the same ``max_delete`` budget.
    ``drifted`` names held series whose content the archive's MD5 hierarchy says changed
    although no listing field did: they are ``changed``, not ``unchanged``.
    ``allow_empty`` names collections the operator confirmed were emptied upstream: an empty
    listing of one is believed, and its withdrawals do not count against ``max_delete``.
    """
    return plan_slice(
        remote,
        HeldSlice.of(held, scope),
        scope=scope,
        max_delete=max_delete,
        template=template,
        delete=delete,
        drifted=drifted,
        allow_empty=allow_empty,
    )


def _admits_record(scope: PlanScope, r: SeriesRecord) -> bool:
    return scope.admits(r.collection, r.patient_id, r.modality, r.series_uid)


def _admits_entry(scope: PlanScope, e: LedgerEntry) -> bool:
    return scope.admits(e.collection, e.patient_id, e.modality, e.series_uid)


def classify(
    record: SeriesRecord, entry: LedgerEntry | None, template: str, drifted: frozenset[str]
) -> PlanItem | Rejected:
    try:
        path = entry.path if entry and entry.path else _path_for(record, template)
    except (IntegrityError, UsageError) as exc:
        return Rejected(record.series_uid, record.collection, str(exc))
    uid = record.series_uid
    if entry is None or entry.state == "withdrawn":
        return PlanItem(uid, "new", path, record, entry)
    if entry.state in PENDING_STATES:
        return PlanItem(uid, "retry", path, record, entry)
    if entry.fingerprint != record.fingerprint or uid in drifted:
        return PlanItem(uid, "changed", path, record, entry)
    return PlanItem(uid, "unchanged", path, record, entry)


def _path_for(record: SeriesRecord, template: str) -> str:
    return series_path(
        collection=record.collection,
        patient_id=record.patient_id,
        study_uid=record.study_uid,
        series_uid=record.series_uid,
        modality=record.modality,
        series_number=record.series_number,
        template=template,
    )


def is_tombstone(entry: LedgerEntry) -> bool:
    """Withdrawn upstream but still visible in the mirror (not moved to the attic yet)."""
    return entry.state == "withdrawn" and entry.n_instances > 0


def _withdrawn(
    held: Mapping[str, LedgerEntry], seen: set[str], scope: PlanScope, *, delete: bool
) -> list[PlanItem]:
    return [
        PlanItem(uid, "withdrawn", entry.path, None, entry)
        for uid, entry in sorted(held.items())
        if uid not in seen
        and (entry.state != "withdrawn" or (delete and is_tombstone(entry)))
        and entry.collection in scope.listed
        and _admits_entry(scope, entry)
    ]


def _held_in_listed(held: Mapping[str, LedgerEntry], scope: PlanScope) -> Counter[str]:
    return Counter(
        e.collection
        for e in held.values()
        if e.state != "withdrawn" and e.collection in scope.listed and _admits_entry(scope, e)
    )


# --- planning from a slice of the ledger (the driver's path at any scale) -----------------


@dataclass(frozen=True, slots=True)
class HeldSlice:
    """The part of the ledger one plan reads, so a run never loads every row.

    ``entries`` holds the rows of the listed series, every row of a listed collection the
    listing does not mention (withdrawal candidates) and every pending row (deferred);
    ``counts`` gives, per listed collection, the rows the scope admits as (held but not
    withdrawn, tombstones): all the two guards weigh. ``Ledger.held_slice`` builds it in place
    with SQL; :meth:`of` builds it from a whole mapping.
    """

    entries: Mapping[str, LedgerEntry]
    counts: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, held: Mapping[str, LedgerEntry], scope: PlanScope) -> HeldSlice:
        live = _held_in_listed(held, scope)
        graves = Counter(
            e.collection
            for e in held.values()
            if is_tombstone(e) and e.collection in scope.listed and _admits_entry(scope, e)
        )
        names = set(live) | set(graves)
        return cls(held, {c: (live.get(c, 0), graves.get(c, 0)) for c in names})


def plan_slice(
    remote: Sequence[SeriesRecord],
    held: HeldSlice,
    *,
    scope: PlanScope,
    max_delete: MaxDelete = DEFAULT_MAX_DELETE,
    template: str = DEFAULT_TEMPLATE,
    delete: bool = False,
    drifted: frozenset[str] = frozenset(),
    allow_empty: frozenset[str] = frozenset(),
) -> SyncPlan:
    """:func:`plan` over a :class:`HeldSlice` (``plan`` is this over ``HeldSlice.of`` the
    whole mapping; ``tests/sync/test_sync_plan_slice.py`` holds the SQL-built slice to it)."""
    _guard_empty_counts(remote, held.counts, scope, allow_empty)
    entries = held.entries
    items: list[PlanItem] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for record in remote:
        if record.series_uid in seen or not _admits_record(scope, record):
            continue
        seen.add(record.series_uid)
        item = classify(record, entries.get(record.series_uid), template, drifted)
        if isinstance(item, Rejected):
            rejected.append(item)
        else:
            items.append(item)
    withdrawn = _withdrawn(entries, seen, scope, delete=delete)
    n_held = sum(
        live + (graves if delete else 0)
        for collection, (live, graves) in held.counts.items()
        if collection not in allow_empty
    )
    check_withdrawals(
        sum(1 for w in withdrawn if w.collection not in allow_empty), n_held, max_delete
    )
    deferred = sorted(
        uid
        for uid, entry in entries.items()
        if uid not in seen
        and entry.state in PENDING_STATES
        and _admits_entry(scope, entry)
        and entry.collection not in scope.listed
    )
    return SyncPlan(tuple(items + withdrawn), tuple(rejected), tuple(deferred), scope)


def _guard_empty_counts(
    remote: Sequence[SeriesRecord],
    counts: Mapping[str, tuple[int, int]],
    scope: PlanScope,
    allow_empty: frozenset[str],
) -> None:
    guard_empty({r.collection for r in remote if _admits_record(scope, r)}, counts, allow_empty)


def guard_empty(
    listed_upstream: Set[str], counts: Mapping[str, tuple[int, int]], allow_empty: frozenset[str]
) -> None:
    """Refuse a listed collection that came back empty while the mirror holds some of it."""
    # rclone's lesson: a failed listing must never read as "everything was deleted".
    for collection, (n_held, _) in sorted(counts.items()):
        if n_held and collection not in listed_upstream and collection not in allow_empty:
            raise SafetyAbort(
                f"the archive listed no series for {collection!r} but the mirror holds "
                f"{n_held}; refusing to treat that as a mass withdrawal (if it really was "
                f"emptied upstream, rerun with --full --allow-empty {collection!r})"
            )


def check_withdrawals(n_withdrawn: int, n_held: int, max_delete: MaxDelete) -> None:
    limit = max_delete.limit(n_held)
    if n_withdrawn > limit:
        raise SafetyAbort(
            f"{n_withdrawn} of {n_held} held series are gone upstream, over "
            f"--max-delete {max_delete} (limit {limit}); review, then rerun with a higher limit"
        )
