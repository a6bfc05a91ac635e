"""Release-to-release change detection at the series level (pure; plan input).

Keyed by SeriesInstanceUID with ``crdc_series_uuid`` as the version token: a new uuid for a
held series is a revision (IDC gives a revised series a new prefix and keeps the old one), a
held series gone from the index is a withdrawal (prior_versions_index says since when).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Revision:
    series_uid: str
    old_uuid: str
    new_uuid: str


@dataclass(frozen=True, slots=True)
class ReleaseDiff:
    new: tuple[str, ...]
    revised: tuple[Revision, ...]
    removed: tuple[str, ...]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not (self.new or self.revised or self.removed)


def diff_releases(held: Mapping[str, str], current: Mapping[str, str]) -> ReleaseDiff:
    """``held`` and ``current`` map SeriesInstanceUID -> crdc_series_uuid."""
    new = tuple(sorted(uid for uid in current if uid not in held))
    removed = tuple(sorted(uid for uid in held if uid not in current))
    revised = tuple(
        Revision(uid, held[uid], current[uid])
        for uid in sorted(held.keys() & current.keys())
        if held[uid] != current[uid]
    )
    unchanged = len(held.keys() & current.keys()) - len(revised)
    return ReleaseDiff(new, revised, removed, unchanged)


__all__ = ["ReleaseDiff", "Revision", "diff_releases"]
