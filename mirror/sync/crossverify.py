"""``mirror verify --cross-source``: NBIA's MD5s against IDC's for every held series both
sources list, every difference reported (exit 5 when there is one).

Whether IDC's bytes equal NBIA's is not known (idc-source.md §1); this tells. Per series:

- IDC's side is the prefix listing's plain-MD5 ETags (one LIST, no GET), or the held
  copy's MD5s when IDC served it at the same ``crdc_series_uuid``; when some ETag is no MD5
  (multipart) the series is fetched (verified, into a scratch folder) and hashed;
- NBIA's side is the held copy's MD5s when NBIA served it (they were checked against
  ``md5hashes.csv`` when fetched), else the series is fetched from NBIA and hashed.

Digests are compared as multisets (:func:`mirror.archive.crosscheck.compare_series`):
names differ by design between the sources.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mirror.archive.crosscheck import CrossSourceDiff, compare_series
from mirror.archive.port import FetchLimits, FetchMeter, SeriesRecord, Source
from mirror.layout import SeriesSidecar
from mirror.storage.port import Store
from mirror.sync.audit import iter_sidecars

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CrossReport:
    checked: int = 0  # series both sources list
    only_one_source: int = 0  # held series one of the sources does not list
    differences: list[CrossSourceDiff] = field(default_factory=list)
    downloads: int = 0  # series fetched to learn a digest neither listing nor held copy gave

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "only_one_source": self.only_one_source,
            "downloads": self.downloads,
            "differences": [
                {"series_uid": d.series_uid, "only_nbia": list(d.only_nbia),
                 "only_idc": list(d.only_idc), "shared": d.shared}
                for d in self.differences
            ],
        }  # fmt: skip


def cross_source(
    store: Store,
    nbia: Source,
    idc: Source,
    *,
    scratch_dir: str | None = None,
    limits: FetchLimits | None = None,
) -> CrossReport:
    report = CrossReport()
    for sidecar in iter_sidecars(store):
        pair = _listed(sidecar.series_uid, nbia, idc)
        if pair is None:
            report.only_one_source += 1
            continue
        checker = _Digests(report, scratch_dir, limits or FetchLimits())
        diff = compare_series(
            sidecar.series_uid,
            checker.nbia(nbia, pair[0], sidecar),
            checker.idc(idc, pair[1], sidecar),
        )
        report.checked += 1
        if not diff.identical:
            log.warning("series %s differs between NBIA and IDC", sidecar.series_uid)
            report.differences.append(diff)
    return report


def _listed(uid: str, nbia: Source, idc: Source) -> tuple[SeriesRecord, SeriesRecord] | None:
    idc_rows = [r for r in idc.series(series_uid=uid) if r.series_uid == uid]
    if not idc_rows:
        return None
    nbia_rows = [r for r in nbia.series(series_uid=uid) if r.series_uid == uid]
    return (nbia_rows[0], idc_rows[0]) if nbia_rows else None


@dataclass(slots=True)
class _Digests:
    report: CrossReport
    scratch_dir: str | None
    limits: FetchLimits

    def nbia(self, source: Source, record: SeriesRecord, held: SeriesSidecar) -> list[str]:
        if held.extra.get("source", "nbia") == "nbia":
            return _held(held)
        return self._fetched(source, record)

    def idc(self, source: Source, record: SeriesRecord, held: SeriesSidecar) -> list[str]:
        same_version = held.extra.get("version_token") == record.version_token
        if held.extra.get("source") == "idc" and same_version:
            return _held(held)
        listed = source.listed_md5s(record)
        return listed if listed is not None else self._fetched(source, record)

    def _fetched(self, source: Source, record: SeriesRecord) -> list[str]:
        self.report.downloads += 1
        with tempfile.TemporaryDirectory(prefix="mirror-cross-", dir=self.scratch_dir) as tmp:
            staged = source.fetch_series(record, tmp, self.limits, FetchMeter())
        return [i.md5 for i in staged.instances]


def _held(sidecar: SeriesSidecar) -> list[str]:
    return [i.md5 for i in sidecar.instances]


def describe(diffs: Iterable[CrossSourceDiff]) -> list[str]:
    """One line per differing instance digest, for the CLI."""
    lines: list[str] = []
    for d in diffs:
        lines += [f"DIFFERS {d.series_uid}: only in NBIA {h}" for h in d.only_nbia]
        lines += [f"DIFFERS {d.series_uid}: only in IDC {h}" for h in d.only_idc]
    return lines


__all__ = ["CrossReport", "cross_source", "describe"]
