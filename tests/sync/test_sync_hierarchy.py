"""The top-down MD5 hierarchy walk: literal ledgers and a fake archive that counts calls."""

from __future__ import annotations

from dataclasses import replace

from mirror.archive.port import HashNode, SeriesRecord
from mirror.layout import hierarchy_md5
from mirror.sync.hierarchy import find_drift, without_hierarchy
from mirror.sync.plan import LedgerEntry


def entry(uid: str, patient: str, study: str, h: str, collection: str = "C") -> LedgerEntry:
    return LedgerEntry(uid, collection, patient, study, f"{collection}/{uid}", "present",
                       md5_hierarchy=h)


HELD = [
    entry("1.1", "P1", "9.1", "a" * 32),
    entry("1.2", "P1", "9.1", "b" * 32),
    entry("1.3", "P1", "9.2", "c" * 32),
    entry("1.4", "P2", "9.3", "d" * 32),
]


class FakeArchive:
    """Builds every level from ``series`` exactly as NBIA does; records each question."""

    def __init__(self, series: dict[str, str]) -> None:
        self.series = series
        self.asked: list[str] = []

    def hierarchy_md5(self, node: HashNode) -> str:
        self.asked.append(node.level)
        rows = [e for e in HELD if e.collection == node.collection and
                (not node.patient_id or e.patient_id == node.patient_id) and
                (not node.study_uid or e.study_uid == node.study_uid) and
                (not node.series_uid or e.series_uid == node.series_uid)]
        return self._level(node.level, rows)

    def _level(self, level: str, rows: list[LedgerEntry]) -> str:
        if not rows:
            return ""
        if level == "series":
            return self.series[rows[0].series_uid]
        below = {"study": "series", "patient": "study", "collection": "patient"}[level]
        key = {"study": lambda e: e.series_uid, "patient": lambda e: e.study_uid,
               "collection": lambda e: e.patient_id}[level]
        groups: dict[str, list[LedgerEntry]] = {}
        for e in rows:
            groups.setdefault(key(e), []).append(e)
        return hierarchy_md5(self._level(below, g) for g in groups.values())


def recorded(e: LedgerEntry) -> frozenset[str]:
    return frozenset({e.md5_hierarchy}) if e.md5_hierarchy else frozenset()


def test_unchanged_collection_costs_one_request() -> None:
    fake = FakeArchive({e.series_uid: e.md5_hierarchy for e in HELD})
    report = find_drift(fake.hierarchy_md5, HELD, recorded)
    assert report.drifted == frozenset() and fake.asked == ["collection"]


def test_walk_descends_only_into_the_changed_branch() -> None:
    fake = FakeArchive({e.series_uid: e.md5_hierarchy for e in HELD} | {"1.3": "e" * 32})
    report = find_drift(fake.hierarchy_md5, HELD, recorded)
    assert report.drifted == frozenset({"1.3"})
    # the collection, its 2 patients, P1's 2 studies, study 9.2's one series
    assert fake.asked == ["collection", "patient", "patient", "study", "study", "series"]


def test_series_without_a_recorded_hash_is_checked_alone_and_adopted() -> None:
    fake = FakeArchive({e.series_uid: e.md5_hierarchy for e in HELD})
    bare = [replace(HELD[0], md5_hierarchy=""), *HELD[1:]]
    report = find_drift(fake.hierarchy_md5, bare, lambda e: recorded(e) or frozenset({"a" * 32}))
    assert report.drifted == frozenset() and report.adopted == (("1.1", "a" * 32),)
    # levels above a hash-less series cannot be compared: its study's series are asked
    # one by one, the rest of the tree as usual
    assert report.requests == len(fake.asked) == 4 and fake.asked.count("series") == 2


def test_unknown_upstream_series_is_reported_not_refetched() -> None:
    fake = FakeArchive({e.series_uid: e.md5_hierarchy for e in HELD} | {"1.4": ""})
    report = find_drift(fake.hierarchy_md5, HELD, recorded)
    assert report.unknown == frozenset({"1.4"}) and report.drifted == frozenset()


def test_without_a_hierarchy_only_series_without_a_version_token_are_blind() -> None:
    assert without_hierarchy(1, 0) == (False, without_hierarchy(2, 0)[1])
    assert "crdc_series_uuid" in without_hierarchy(1, 0)[1]
    warn, message = without_hierarchy(3, 2)
    assert warn
    assert "2 listed series without a version token" in message
    assert without_hierarchy(0, 0)[0] is False


def test_version_tokens_are_counted_from_items_and_from_the_carried_listing() -> None:
    from types import SimpleNamespace

    import numpy as np

    from mirror.archive.listing_table import records_table
    from mirror.sync.plan import PlanItem, SyncPlan
    from mirror.sync.run import _version_tokens

    idc = SeriesRecord("1.1", "1", "P", "C", version_token="u-1", source="idc")
    nbia = SeriesRecord("1.2", "1", "P", "C", source="nbia")
    itemised = SyncPlan((PlanItem("1.2", "unchanged", "C/P/1/1.2", nbia, None),), carried=2)
    listing = records_table([idc, nbia, SeriesRecord("1.3", "1", "P", "C", source="nbia")])
    carried = SimpleNamespace(plan=itemised, listing=listing, rows=np.array([0, 2]))
    assert _version_tokens(itemised, None) == (1, 1)
    assert _version_tokens(itemised, carried) == (3, 2)  # rows 0 (token) and 2 (none)
