"""Find silent upstream changes with NBIA's MD5 hierarchy, top-down.

An instance replaced upstream without a new DateReleased (same size, same count) leaves
every listing field as it was; only ``getMD5Hierarchy`` sees it. The archive hashes each
level from the one below (nbia-api.md 5.13): series over its instances' stored digests,
study over its series, patient over its studies, collection over its patients. The mirror
keeps each held series' hash (recorded from the verified download) and builds the upper
levels the same way, so one request per collection proves an unchanged collection, and
the walk descends only where the hashes differ, down to the series that changed.

The collection level is a cached value upstream, refreshed by a background job: ``sync
--full`` trusts it (a change is found once that cache catches up), ``verify --upstream``
starts one level lower, at the patients, which the archive computes live. The walk is pure
apart from the two callables it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from mirror.archive.port import HashNode
from mirror.layout import hierarchy_md5
from mirror.sync.plan import LedgerEntry

Upstream = Callable[[HashNode], str]  # getMD5Hierarchy for one node; "" when unknown
Candidates = Callable[[LedgerEntry], frozenset[str]]  # hashes a held copy may match


@dataclass(frozen=True, slots=True)
class DriftReport:
    drifted: frozenset[str]  # held series whose content differs from the archive's
    unknown: frozenset[str]  # held series the archive has no hash for
    adopted: tuple[tuple[str, str], ...]  # (series_uid, hash) for copies recorded without one
    requests: int

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "drifted": sorted(self.drifted),
            "unknown": sorted(self.unknown),
        }


def find_drift(
    upstream: Upstream,
    held: Iterable[LedgerEntry],
    candidates: Candidates,
    *,
    threads: int = 8,
    trust_collection_cache: bool = True,
) -> DriftReport:
    """Compare the held series with the archive, level by level from the collections down.

    Each level's questions go out together (``threads`` at a time): a first check of a
    large mirror whose series are recorded without their hash asks once per series.
    Without ``trust_collection_cache`` the walk starts at the patients (computed live
    upstream), one request per held patient, so a lagging collection cache hides nothing.
    """
    walk = _Walk()
    frontier = [(HashNode(c), group) for c, group in _grouped(held, lambda e: e.collection)]
    if not trust_collection_cache:
        frontier = [child for node, group in frontier for child in children(node, group)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        while frontier:
            frontier = walk.level(frontier, pool, upstream, candidates)
    return DriftReport(
        frozenset(walk.drifted), frozenset(walk.unknown), tuple(walk.adopted), walk.requests
    )


Level = list[tuple[HashNode, list[LedgerEntry]]]


@dataclass(slots=True)
class _Walk:
    drifted: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    adopted: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0

    def level(
        self, frontier: Level, pool: ThreadPoolExecutor, upstream: Upstream, candidates: Candidates
    ) -> Level:
        """Ask every comparable node of one level; return the nodes to descend into."""
        mine = [local_hash(node, group) for node, group in frontier]
        # A level holding a series recorded without its hash cannot be compared: descend.
        asked = [i for i, (n, _) in enumerate(frontier) if n.level == "series" or mine[i]]
        nodes = [frontier[i][0] for i in asked]
        answers = dict(zip(asked, pool.map(partial(_ask, upstream), nodes), strict=True))
        leaves = [i for i in asked if frontier[i][0].level == "series"]
        # Candidates may read a sidecar (series recorded without a hash): overlap those too.
        theirs_ok = pool.map(candidates, [frontier[i][1][0] for i in leaves])
        held = dict(zip(leaves, theirs_ok, strict=True))
        self.requests += len(asked)
        following: Level = []
        for i, (node, group) in enumerate(frontier):
            if node.level == "series":
                self.judge(group[0], answers[i], held[i])
            elif mine[i] is None or answers[i] != mine[i]:
                following.extend(children(node, group))
        return following

    def judge(self, entry: LedgerEntry, theirs: str, mine: frozenset[str]) -> None:
        if not theirs:
            self.unknown.add(entry.series_uid)
        elif theirs not in mine:
            self.drifted.add(entry.series_uid)
        elif not entry.md5_hierarchy:
            self.adopted.append((entry.series_uid, theirs))


def without_hierarchy(unchanged: int, blind: int) -> tuple[bool, str]:
    """What ``--full`` can and cannot see when the source offers no MD5 hierarchy, given
    how many held series the listing calls unchanged and how many of those carry no version
    token: (worth a warning, message). A record with a version token (IDC's
    ``crdc_series_uuid``) changes token whenever its content changes, so reconciling the
    whole listing, as ``--full`` does, already finds it; the MD5 hierarchy is an NBIA
    feature for NBIA's series, which carry none."""
    if not unchanged:
        return False, "--full: no held series is unchanged in the listing; nothing to re-check"
    if not blind:
        return False, (
            "--full reconciled the whole listing: every listed series carries a version "
            "token (IDC: crdc_series_uuid), so a changed series shows as a new token; the "
            "MD5 hierarchy is NBIA's and is not needed here"
        )
    return True, (
        f"the source offers no MD5 hierarchy: silent changes to {blind} listed series "
        "without a version token stay unseen (NBIA's getMD5Hierarchy finds them)"
    )


def _ask(upstream: Upstream, node: HashNode) -> str:
    return upstream(node).strip().lower()


def local_hash(node: HashNode, entries: Sequence[LedgerEntry]) -> str | None:
    """The node's hash built from the held series the way the archive builds it; None if
    any of them was recorded without its series hash."""
    if node.level == "series":
        return entries[0].md5_hierarchy or None
    parts: list[str] = []
    for child, group in children(node, entries):
        part = local_hash(child, group)
        if part is None:
            return None
        parts.append(part)
    return hierarchy_md5(parts)


def children(
    node: HashNode, entries: Sequence[LedgerEntry]
) -> list[tuple[HashNode, list[LedgerEntry]]]:
    c = node.collection
    if node.level == "collection":
        return [(HashNode(c, patient_id=p), g) for p, g in _grouped(entries, _patient)]
    if node.level == "patient":
        pid = node.patient_id
        return [(HashNode(c, pid, study_uid=s), g) for s, g in _grouped(entries, _study)]
    if node.level == "study":
        pid, study = node.patient_id, node.study_uid
        return [(HashNode(c, pid, study, e.series_uid), [e]) for e in entries]
    return []


def _patient(e: LedgerEntry) -> str:
    return e.patient_id


def _study(e: LedgerEntry) -> str:
    return e.study_uid


def _grouped(
    entries: Iterable[LedgerEntry], key: Callable[[LedgerEntry], str]
) -> list[tuple[str, list[LedgerEntry]]]:
    groups: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        groups.setdefault(key(entry), []).append(entry)
    return sorted(groups.items())
