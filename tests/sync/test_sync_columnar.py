"""The columnar reconcile (``Ledger.held_columns`` + ``plan_columnar``) against today's
``plan`` over the whole ledger, kept as the oracle, on the random histories of
``test_sync_plan_slice``: the same counts, the same items in the same order (the unchanged
ones carried as a count), the same rejections, deferrals and refusals.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mirror.archive.listing_table import records_table, table_records
from mirror.archive.port import SeriesRecord
from mirror.errors import SafetyAbort
from mirror.sync.columnar import ColumnarPlan, plan_columnar
from mirror.sync.ledger import Ledger
from mirror.sync.plan import MaxDelete, PlanScope, SyncPlan, plan
from tests.sync.test_sync_plan_slice import (
    PLAN_CASES,
    UIDS,
    Step,
    apply,
    record,
    sidecar,
)


def oracle(fn: object) -> object:
    try:
        the_plan: SyncPlan = fn()  # type: ignore[operator]
    except SafetyAbort as exc:
        return f"SafetyAbort: {exc}"
    return summary(the_plan, [i for i in the_plan.items if i.outcome == "unchanged"])


def summary(the_plan: SyncPlan, unchanged: object) -> object:
    itemised = tuple(i for i in the_plan.items if i.outcome != "unchanged")
    return (the_plan.counts, itemised, the_plan.rejected, the_plan.deferred, unchanged)


def columnar(fn: object) -> object:
    try:
        result: ColumnarPlan = fn()  # type: ignore[operator]
    except SafetyAbort as exc:
        return f"SafetyAbort: {exc}"
    assert not result.plan.by_outcome("unchanged")
    return result


def plan_both(
    ledger: Ledger, remote: list[SeriesRecord], scope: PlanScope, **options: object
) -> tuple[object, object]:
    whole = ledger.entries()
    expected = oracle(lambda: plan(remote, whole, scope=scope, **options))  # type: ignore[arg-type]
    held = ledger.held_columns(remote, scope)
    got = columnar(
        lambda: plan_columnar(
            records_table(remote), held, ledger.entries_for, scope=scope, **options
        )
    )  # type: ignore[arg-type]
    if isinstance(got, ColumnarPlan):
        assert len(got.rows) == got.plan.carried
        carried = got.unchanged.column("series_uid").to_pylist()
        got = summary(got.plan, carried)
        if not isinstance(expected, str):
            # the oracle's unchanged items, as the UIDs the columnar plan carries
            expected = (*expected[:4], [i.series_uid for i in expected[4]])  # type: ignore[index]
            got = (*got[:4], sorted(carried, key=[u for u in expected[4]].index))  # type: ignore[index]
    return got, expected


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(**PLAN_CASES)
def test_the_columnar_plan_gives_the_outcomes_of_the_record_planner(
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
    with Ledger.open(tmp_path_factory.mktemp("columnar") / "ledger.sqlite") as ledger:
        for n, step in enumerate(history, start=1):
            apply(ledger, step, n)
        got, expected = plan_both(
            ledger,
            remote,
            scope,
            delete=delete,
            allow_empty=allow_empty,
            max_delete=max_delete,
            drifted=drifted,
        )
    assert got == expected


def test_a_listing_table_round_trips_every_record_field() -> None:
    full = SeriesRecord(
        series_uid="1.2.3",
        study_uid="1.2",
        patient_id="P",
        collection="C",
        modality="CT",
        image_count=3,
        file_size=42,
        date_released=date(2024, 1, 2),
        max_submission=date(2024, 1, 1),
        series_number=7,
        series_date=date(2020, 5, 6),
        series_description="axial",
        version_token="abc",
        source="idc",
        location="bucket",
    )
    bare = SeriesRecord(series_uid="1.2.4", study_uid="1.2", patient_id="P", collection="C")
    assert table_records(records_table([full, bare])) == [full, bare]


def test_version_tokens_and_dates_compare_as_the_record_fingerprint_does(tmp_path: Path) -> None:
    def idc(token: str) -> SeriesRecord:
        return SeriesRecord(
            series_uid=UIDS[1],
            study_uid="2.25.1",
            patient_id="P2",
            collection="Col-A",
            image_count=2,
            file_size=5,
            version_token=token,
            source="idc",
        )

    nbia = record(UIDS[0], 2)  # DateReleased 2024-01-03, no submission date
    scope = PlanScope(listed=frozenset({"Col-A"}))
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        for n, r in enumerate((nbia, idc("u-1")), start=1):
            ledger.record_committed(r, sidecar(r, f"x/{r.series_uid}", n), "run-1", changed=True)
        for remote, expected in (
            ([nbia, idc("u-1")], []),
            ([nbia, idc("u-2")], [(UIDS[1], "changed")]),
            ([record(UIDS[0], 1), idc("u-1")], [(UIDS[0], "changed")]),
        ):
            result = plan_columnar(
                records_table(remote),
                ledger.held_columns(remote, scope),
                ledger.entries_for,
                scope=scope,
            )
            assert [(i.series_uid, i.outcome) for i in result.plan.items] == expected
            assert result.plan.counts["unchanged"] == 2 - len(expected)
            assert result.unchanged.num_rows == 2 - len(expected)


def test_a_tabular_source_lists_collections_as_its_own_tables() -> None:
    """``gather``'s full listing takes a TabularListing source's tables as they are (columns
    it lacks are filled as a record would have them), and any other source's records."""
    from mirror.archive.listing_table import TabularListing
    from mirror.sync.listing import _full_listing

    rows = {c: [record(u, 0) for u in UIDS if record(u, 0).collection == c]
            for c in ("Col-A", "Col-B")}  # fmt: skip

    class Tabular:
        def series_table(self, collection: str) -> object:
            return records_table(rows[collection]).drop_columns(["series_description"])

    class Records:
        def series(self, collection: str) -> list[SeriesRecord]:
            return rows[collection]

    assert isinstance(Tabular(), TabularListing) and not isinstance(Records(), TabularListing)
    expected = rows["Col-A"] + rows["Col-B"]
    for source in (Tabular(), Records()):
        table = _full_listing(source, ["Col-A", "Col-B"], frozenset())  # type: ignore[arg-type]
        assert table_records(table) == expected
