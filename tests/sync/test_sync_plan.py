"""The pure planner: literal listings and ledgers in, one outcome per series out."""

from __future__ import annotations

from datetime import date

import pytest

from mirror.archive.port import SeriesRecord
from mirror.errors import SafetyAbort, UsageError
from mirror.sync.plan import LedgerEntry, MaxDelete, PlanScope, plan

S1, S2, S3, S4 = "1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"


def rec(uid: str, collection: str = "A", *, count: int = 2, size: int = 100, **kw: object) -> SeriesRecord:
    return SeriesRecord(
        series_uid=uid,
        study_uid="1.2.9",
        patient_id=str(kw.pop("patient_id", "P1")),
        collection=collection,
        image_count=count,
        file_size=size,
        date_released=date(2024, 1, 2),
        **kw,  # type: ignore[arg-type]
    )


def held(r: SeriesRecord, state: str = "present", **kw: object) -> LedgerEntry:
    return LedgerEntry(
        series_uid=r.series_uid,
        collection=r.collection,
        patient_id=r.patient_id,
        study_uid=r.study_uid,
        path=f"{r.collection}/{r.patient_id}/{r.study_uid}/{r.series_uid}",
        state=state,  # type: ignore[arg-type]
        fingerprint=r.fingerprint,
        modality=r.modality,
        series_version=1,
        **kw,  # type: ignore[arg-type]
    )


def outcomes(p: object) -> dict[str, str]:
    return {i.series_uid: i.outcome for i in p.items}  # type: ignore[attr-defined]


def test_every_series_gets_exactly_one_outcome() -> None:
    a, b, c, d = rec(S1), rec(S2), rec(S3), rec(S4)
    changed_b = rec(S2, count=3, size=150)
    ledger = {
        a.series_uid: held(a),
        b.series_uid: held(b),
        c.series_uid: held(c, "failed"),
        d.series_uid: held(d),
    }
    p = plan([a, changed_b, c, rec("1.2.3.5")], ledger, scope=PlanScope(listed=frozenset({"A"})))
    assert outcomes(p) == {S1: "unchanged", S2: "changed", S3: "retry", S4: "withdrawn", "1.2.3.5": "new"}
    assert p.counts == {"new": 1, "changed": 1, "unchanged": 1, "withdrawn": 1, "retry": 1, "rejected": 0}
    assert p.bytes_to_fetch == 150 + 100 + 100


def test_in_progress_after_a_crash_is_retried() -> None:
    a = rec(S1)
    p = plan([a], {S1: held(a, "in_progress")}, scope=PlanScope())
    assert outcomes(p) == {S1: "retry"}
    assert p.items[0].next_version == 2


def test_withdrawal_needs_a_full_listing_of_that_collection() -> None:
    a, b = rec(S1), rec(S2)
    ledger = {S1: held(a), S2: held(b)}
    incremental = plan([a], ledger, scope=PlanScope())
    assert outcomes(incremental) == {S1: "unchanged"}
    full = plan([a], ledger, scope=PlanScope(listed=frozenset({"A"})))
    assert outcomes(full) == {S1: "unchanged", S2: "withdrawn"}
    assert full.by_outcome("withdrawn")[0].path == ledger[S2].path


def test_withdrawn_series_reappearing_is_new_and_tombstones_are_not_rewithdrawn() -> None:
    a, b, c = rec(S1), rec(S2), rec(S3)
    ledger = {S1: held(a, "withdrawn"), S2: held(b, "withdrawn"), S3: held(c)}
    p = plan([a, c], ledger, scope=PlanScope(listed=frozenset({"A"})))
    assert outcomes(p) == {S1: "new", S3: "unchanged"}


def test_empty_listing_for_a_held_collection_aborts() -> None:
    a = rec(S1, "A")
    with pytest.raises(SafetyAbort, match="listed no series for 'A'"):
        plan([rec(S2, "B")], {S1: held(a)}, scope=PlanScope(listed=frozenset({"A", "B"})))


def test_max_delete_count_and_percent() -> None:
    recs = [rec(f"1.2.3.{i}") for i in range(10)]
    ledger = {r.series_uid: held(r) for r in recs}
    scope = PlanScope(listed=frozenset({"A"}))
    remaining = recs[:7]
    with pytest.raises(SafetyAbort, match="3 of 10"):
        plan(remaining, ledger, scope=scope, max_delete=MaxDelete.parse("2"))
    with pytest.raises(SafetyAbort):
        plan(remaining, ledger, scope=scope, max_delete=MaxDelete.parse("20%"))
    ok = plan(remaining, ledger, scope=scope, max_delete=MaxDelete.parse("30%"))
    assert ok.counts["withdrawn"] == 3
    assert plan(remaining, ledger, scope=scope).counts["withdrawn"] == 3  # default 50 %


@pytest.mark.parametrize("text", ["", "x", "-1", "10%%", "101%", "5 files"])
def test_max_delete_rejects_garbage(text: str) -> None:
    with pytest.raises(UsageError):
        MaxDelete.parse(text)


def test_filters_modality_patient_manifest_and_collection() -> None:
    recs = [
        rec(S1, modality="CT", patient_id="P1"),
        rec(S2, modality="MR", patient_id="P1"),
        rec(S3, modality="CT", patient_id="P2"),
        rec(S4, "B", modality="CT", patient_id="P1"),
    ]
    by_mod = plan(recs, {}, scope=PlanScope(modalities=frozenset({"CT"})))
    assert set(outcomes(by_mod)) == {S1, S3, S4}
    by_patient = plan(recs, {}, scope=PlanScope(patients=frozenset({"P2"})))
    assert set(outcomes(by_patient)) == {S3}
    by_uid = plan(recs, {}, scope=PlanScope(series_uids=frozenset({S2, S4})))
    assert set(outcomes(by_uid)) == {S2, S4}
    by_coll = plan(recs, {}, scope=PlanScope(collections=frozenset({"B"})))
    assert set(outcomes(by_coll)) == {S4}
    assert by_uid.scope.filtered and not by_coll.scope.filtered


def test_filtered_full_listing_only_withdraws_inside_the_filter() -> None:
    ct, mr = rec(S1, modality="CT"), rec(S2, modality="MR")
    ledger = {S1: held(ct), S2: held(mr)}
    scope = PlanScope(listed=frozenset({"A"}), modalities=frozenset({"CT"}))
    p = plan([ct], ledger, scope=scope, max_delete=MaxDelete.parse("100%"))
    assert outcomes(p) == {S1: "unchanged"}


def test_bad_uid_and_hostile_patient_id() -> None:
    bad = rec("1.2.x", patient_id="P1")
    hostile = rec(S1, patient_id="../../etc")
    p = plan([bad, hostile], {}, scope=PlanScope())
    assert [r.series_uid for r in p.rejected] == ["1.2.x"]
    (item,) = p.items
    assert ".." not in item.path.split("/")
    assert item.path.startswith("A/")


def test_duplicates_in_listing_count_once_and_layout_template_applies() -> None:
    a = rec(S1, modality="CT")
    p = plan([a, a], {}, scope=PlanScope(), template="{collection}/{modality}/{series_uid}")
    assert [i.path for i in p.items] == [f"A/CT/{S1}"]


def test_pending_series_missing_from_incremental_listing_are_deferred() -> None:
    a = rec(S1)
    p = plan([], {S1: held(a, "failed")}, scope=PlanScope())
    assert p.items == () and p.deferred == (S1,)


def test_dry_run_dict_lists_work_not_unchanged() -> None:
    a, b = rec(S1), rec(S2)
    p = plan([a, b], {S1: held(a)}, scope=PlanScope())
    d = p.to_dict()
    assert d["bytes_to_fetch"] == 100
    assert [s["series_uid"] for s in d["series"]] == [S2]  # type: ignore[index]


def test_drifted_unchanged_series_is_changed() -> None:
    a, b = rec(S1), rec(S2)
    out = plan([a, b], {S1: held(a), S2: held(b)}, scope=PlanScope(listed=frozenset({"A"})),
               drifted=frozenset({S2}))
    assert [(i.series_uid, i.outcome) for i in out.items] == [(S1, "unchanged"), (S2, "changed")]


def test_delete_withdraws_tombstones_again_within_max_delete() -> None:
    a, b, c = rec(S1), rec(S2), rec(S3)
    ledger = {S1: held(a), S2: held(b, "withdrawn", n_instances=2),
              S3: held(c, "withdrawn", n_instances=0)}  # S3 already in the attic
    scope = PlanScope(listed=frozenset({"A"}))
    assert plan([a], ledger, scope=scope).by_outcome("withdrawn") == ()
    again = plan([a], ledger, scope=scope, delete=True)
    assert [i.series_uid for i in again.by_outcome("withdrawn")] == [S2]
    with pytest.raises(SafetyAbort):  # the tombstone counts against --max-delete
        plan([a], ledger, scope=scope, delete=True, max_delete=MaxDelete.parse("0"))


def test_allow_empty_believes_an_emptied_collection_and_withdraws_all_of_it() -> None:
    a1, a2, b = rec(S1, "A"), rec(S2, "A"), rec(S3, "B")
    ledger = {S1: held(a1), S2: held(a2), S3: held(b)}
    scope = PlanScope(listed=frozenset({"A", "B"}))
    with pytest.raises(SafetyAbort, match="--allow-empty 'A'"):
        plan([b], ledger, scope=scope, max_delete=MaxDelete.parse("100%"))
    p = plan([b], ledger, scope=scope, allow_empty=frozenset({"A"}))
    assert outcomes(p) == {S1: "withdrawn", S2: "withdrawn", S3: "unchanged"}


def test_allow_empty_does_not_loosen_the_guards_of_other_collections() -> None:
    a, b1, b2 = rec(S1, "A"), rec(S2, "B"), rec(S3, "B")
    ledger = {S1: held(a), S2: held(b1), S3: held(b2)}
    scope = PlanScope(listed=frozenset({"A", "B"}))
    with pytest.raises(SafetyAbort, match="listed no series for 'B'"):
        plan([], ledger, scope=scope, allow_empty=frozenset({"A"}))
    # A's withdrawal is not counted; B losing 1 of 2 is judged on B alone (limit 0 here).
    with pytest.raises(SafetyAbort, match="1 of 2"):
        plan([b1], ledger, scope=scope, max_delete=MaxDelete.parse("0"), allow_empty=frozenset({"A"}))
    ok = plan([b1, b2], ledger, scope=scope, max_delete=MaxDelete.parse("0"), allow_empty=frozenset({"A"}))
    assert outcomes(ok) == {S1: "withdrawn", S2: "unchanged", S3: "unchanged"}


def test_allow_empty_of_a_collection_still_listed_changes_nothing() -> None:
    a = rec(S1, "A")
    p = plan([a], {S1: held(a)}, scope=PlanScope(listed=frozenset({"A"})), allow_empty=frozenset({"A"}))
    assert outcomes(p) == {S1: "unchanged"}
