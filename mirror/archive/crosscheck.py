"""Cross-source comparison of one series' instance digests (``mirror verify --cross-source``).

Whether IDC's copy of a TCIA series is byte-identical to NBIA's is not known
(idc-source.md §1). The cheap, exact test is to compare the multisets of instance MD5s:
NBIA's ``md5hashes.csv`` values and the MD5s of the bytes IDC served (computed on receipt, so
it works whether or not an object's ETag is an MD5). File names differ by design (NBIA's
``1-001.dcm``, IDC's ``<crdc_instance_uuid>.dcm``), so they are not compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.layout import normalize_md5


@dataclass(frozen=True, slots=True)
class CrossSourceDiff:
    series_uid: str
    only_nbia: tuple[str, ...]  # MD5s NBIA has that IDC does not (sorted, with repeats)
    only_idc: tuple[str, ...]
    shared: int  # instances whose bytes both sources serve identically

    @property
    def identical(self) -> bool:
        return not (self.only_nbia or self.only_idc)


def compare_series(
    series_uid: str, nbia_md5s: Iterable[str], idc_md5s: Iterable[str]
) -> CrossSourceDiff:
    """Compare digests as multisets (NBIA's hex is normalised: lowercase, left-padded to 32)."""
    nbia = Counter(normalize_md5(h) for h in nbia_md5s)
    idc = Counter(normalize_md5(h) for h in idc_md5s)
    only_nbia = tuple(sorted((nbia - idc).elements()))
    only_idc = tuple(sorted((idc - nbia).elements()))
    return CrossSourceDiff(series_uid, only_nbia, only_idc, sum((nbia & idc).values()))


__all__ = ["CrossSourceDiff", "compare_series"]
