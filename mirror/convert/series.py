"""Convert one series (a set of instance files) into one OME-Zarr store.

Pure of any mirror bookkeeping: give it an :class:`InstanceSource` and a zarr v3 store.
The incremental/Store-aware wrapper is :func:`mirror.convert.pipeline.convert_series`.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numcodecs
import pydicom

from mirror import __version__
from mirror.convert.assemble import assemble
from mirror.convert.decode import pixel_digest
from mirror.convert.scan import Skipped, SliceHeader, scan_instance
from mirror.convert.source import InstanceSource
from mirror.convert.write import StackResult, write_series

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SeriesOutcome:
    """What one conversion wrote: per-stack results and the instances that yield no image."""

    stacks: tuple[StackResult, ...]
    skipped: tuple[Skipped, ...]

    @property
    def written(self) -> tuple[StackResult, ...]:
        return tuple(s for s in self.stacks if s.status == "written")


def converter_info() -> dict[str, Any]:
    import zarr

    return {
        "name": "tcia-mirror",
        "version": __version__,
        "pydicom": pydicom.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
    }


def scan_source(source: InstanceSource, pool: Executor) -> tuple[list[SliceHeader], list[Skipped]]:
    def one(name: str) -> list[SliceHeader] | Skipped:
        with source.open(name) as fp:
            return scan_instance(name, fp)

    headers: list[SliceHeader] = []
    skipped: list[Skipped] = []
    for result in pool.map(one, source.names()):
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            headers.extend(result)
    return headers, skipped


def convert_source(
    source: InstanceSource,
    zstore: Any,
    *,
    name: str,
    series_attrs: dict[str, Any] | None = None,
    threads: int = 2,
) -> SeriesOutcome:
    """Scan, assemble and write every stack of ``source`` into ``zstore`` (root written last)."""
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode") as pool:
        headers, skipped = scan_source(source, pool)
        for s in skipped:
            log.info("skipping %s: %s", s.name, s.reason)
        plans = assemble(headers, lambda h: pixel_digest(source, h))
        attrs = _series_attrs(headers, skipped, series_attrs or {})
        stacks = write_series(zstore, plans, source, name=name, series_attrs=attrs, pool=pool)
    return SeriesOutcome(tuple(stacks), tuple(skipped))


def _series_attrs(
    headers: list[SliceHeader], skipped: list[Skipped], extra: dict[str, Any]
) -> dict[str, Any]:
    uids = sorted({h.series_uid for h in headers})
    return {
        "SeriesInstanceUID": uids[0] if len(uids) == 1 else uids,
        "Modality": headers[0].modality if headers else "",
        "skipped_instances": [
            {"file": s.name, "sop_instance_uid": s.sop_uid, "reason": s.reason} for s in skipped
        ],
        "converter": converter_info(),
        **extra,
    }
