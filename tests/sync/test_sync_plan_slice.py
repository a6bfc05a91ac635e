"""The in-place planner (``Ledger.held_slice`` + ``plan_slice``) against today's ``plan`` over
the whole ledger, on random histories: the same items in the same order, the same rejections
and deferrals, the same refusals.

A history drives a real ledger through the driver's own transitions (submit, commit with a
default or custom path and a patient that moved, fail, withdraw with or without the attic,
``ledger rebuild`` from a sidecar); then a random listing (duplicates, changed fingerprints,
absent series) is planned under a random scope, ``--delete``, ``--allow-empty`` and
``--max-delete``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror.archive.port import SeriesRecord
from mirror.errors import SafetyAbort
from mirror.layout import InstanceEntry, SeriesSidecar
from mirror.sync.ledger import Ledger
from mirror.sync.plan import HeldSlice, MaxDelete, PlanScope, SyncPlan, plan, plan_slice

UIDS = tuple(f"1.2.840.{i}" for i in range(10))
COLLECTIONS = ("Col-A", "Col-B", "Col-C")
PATIENTS = ("P1", "P2")
MODALITIES = ("CT", "MR")


def record(uid: str, variant: int, patient: str = "") -> SeriesRecord:
    """The same series keeps its collection; its patient, modality and listing move."""
    i = UIDS.index(uid)
    return SeriesRecord(
        series_uid=uid,
        study_uid=f"2.25.{i % 4}",
        patient_id=patient or PATIENTS[i % 2],
        collection=COLLECTIONS[i % 3],
        modality=MODALITIES[(i + variant) % 2],
        image_count=1 + variant,
        file_size=100 * (1 + variant),
        date_released=date(2024, 1, 1 + variant),
    )


def sidecar(r: SeriesRecord, path: str, version: int) -> SeriesSidecar:
    return SeriesSidecar(
        series_uid=r.series_uid,
        study_uid=r.study_uid,
        patient_id=r.patient_id,
        collection=r.collection,
        modality=r.modality,
        path=path,
        instances=(InstanceEntry(name="1-1.dcm", md5=f"{version:032x}", size=r.file_size),),
        fingerprint=r.fingerprint,
        series_version=version,
        run_id=f"run-{version}",
        synced_at="2024-01-01T00:00:00+00:00",
        tool_version="test",
    )


@dataclass(frozen=True)
class Step:
    kind: str
    uid: str
    variant: int
    flag: bool


STEPS = st.builds(
    Step,
    kind=st.sampled_from(["submit", "commit", "fail", "withdraw", "rebuild"]),
    uid=st.sampled_from(UIDS),
    variant=st.integers(0, 2),
    flag=st.booleans(),
)


def apply(ledger: Ledger, step: Step, n: int) -> None:
    moved = "P9" if step.flag and step.kind == "commit" else ""  # re-filed under a new patient
    r = record(step.uid, step.variant, moved)
    default = f"{r.collection}/{r.patient_id}/{r.study_uid}/{r.series_uid}"
    path = f"custom/{r.series_uid}" if step.flag and step.kind == "rebuild" else default
    if step.kind == "submit":
        ledger.mark_in_progress([(r, path)], f"run-{n}")
    elif step.kind == "commit":
        held = ledger.entry(step.uid)
        ledger.record_committed(r, sidecar(r, held.path if held else path, n), f"run-{n}",
                                changed=True)  # fmt: skip
    elif step.kind == "fail":
        ledger.record_failed(r, path, f"run-{n}", "ArchiveError", "boom")
    elif step.kind == "withdraw":
        ledger.record_withdrawn(step.uid, f"run-{n}", "gone", gone=step.flag)
    else:
        ledger.upsert_from_sidecar(sidecar(r, path, n))


LISTINGS = st.lists(st.tuples(st.sampled_from(UIDS), st.integers(0, 2)), max_size=14)
SUBSETS = st.frozensets(st.sampled_from(COLLECTIONS))


def scopes() -> st.SearchStrategy[PlanScope]:
    return st.builds(
        PlanScope,
        collections=st.one_of(st.none(), SUBSETS),
        listed=SUBSETS,
        modalities=st.frozensets(st.sampled_from(MODALITIES), max_size=1),
        patients=st.frozensets(st.sampled_from((*PATIENTS, "P9")), max_size=1),
        series_uids=st.one_of(st.none(), st.frozensets(st.sampled_from(UIDS), min_size=1)),
    )


def outcome(fn: object) -> SyncPlan | str:
    try:
        return fn()  # type: ignore[operator,no-any-return]
    except SafetyAbort as exc:
        return f"SafetyAbort: {exc}"


# One random planning case: a ledger history, a listing and the run's options (shared with
# the columnar planner's oracle test).
PLAN_CASES = {
    "history": st.lists(STEPS, max_size=25),
    "listing": LISTINGS,
    "scope": scopes(),
    "delete": st.booleans(),
    "allow_empty": SUBSETS,
    "max_delete": st.sampled_from(
        [MaxDelete(v, p) for v, p in ((0, False), (1, False), (50, True))]
    ),
    "drifted": st.frozensets(st.sampled_from(UIDS), max_size=2),
}


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(**PLAN_CASES)
def test_the_slice_plans_as_the_whole_ledger_does(
    tmp_path_factory: pytest.TempPathFactory,
    history: list[Step],
    listing: list[tuple[str, int]],
    scope: PlanScope,
    delete: bool,
    allow_empty: frozenset[str],
    max_delete: MaxDelete,
    drifted: frozenset[str],
) -> None:
    remote = [record(uid, variant) for uid, variant in listing]
    options = {"scope": scope, "delete": delete, "allow_empty": allow_empty,
               "max_delete": max_delete, "drifted": drifted}  # fmt: skip
    with Ledger.open(tmp_path_factory.mktemp("slice") / "ledger.sqlite") as ledger:
        for n, step in enumerate(history, start=1):
            apply(ledger, step, n)
        whole = ledger.entries()
        in_place = ledger.held_slice(remote, scope)
        expected = outcome(lambda: plan(remote, whole, **options))  # type: ignore[arg-type]
        assert outcome(lambda: plan_slice(remote, in_place, **options)) == expected  # type: ignore[arg-type]
        pure = HeldSlice.of(whole, scope)
        assert outcome(lambda: plan_slice(remote, pure, **options)) == expected  # type: ignore[arg-type]
        assert set(in_place.entries) <= set(whole)  # a slice, never more than the ledger
        for uid, entry in in_place.entries.items():
            assert entry == whole[uid]


def test_a_nightly_slice_holds_only_the_listed_and_pending_rows(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        for n, uid in enumerate(UIDS, start=1):
            r = record(uid, 0)
            ledger.record_committed(r, sidecar(r, f"x/{uid}", n), "run-1", changed=True)
        ledger.record_failed(record(UIDS[9], 0), "x", "run-2", "ArchiveError", "boom")
        listed = [record(UIDS[0], 1)]
        held = ledger.held_slice(listed, PlanScope())
        assert set(held.entries) == {UIDS[0], UIDS[9]} and held.counts == {}
        the_plan = plan_slice(listed, held, scope=PlanScope())
        assert [(i.series_uid, i.outcome) for i in the_plan.items] == [(UIDS[0], "changed")]
        assert the_plan.deferred == (UIDS[9],)


def test_a_default_path_is_stored_empty_and_read_back_whole(tmp_path: Path) -> None:
    r = record(UIDS[0], 0)
    default = f"{r.collection}/{r.patient_id}/{r.study_uid}/{r.series_uid}"
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ledger.record_committed(r, sidecar(r, default, 1), "run-1", changed=True)
        moved = record(UIDS[0], 1, "P9")  # same folder, new patient: no longer the default
        ledger.record_committed(moved, sidecar(moved, default, 2), "run-2", changed=True)
        assert ledger.entry(UIDS[0]).path == default  # type: ignore[union-attr]
        ledger.record_committed(r, sidecar(r, default, 3), "run-3", changed=True)
        assert ledger.entry(UIDS[0]).path == default  # type: ignore[union-attr]
        stored = ledger._conn.execute("SELECT path FROM series").fetchone()[0]
    assert stored == ""
