"""Publish a verified series: build its sidecar and hand the staged folder to the Store.

The sidecar ``_series.json`` is the commit marker; :meth:`Store.publish_series` writes it
last (locally: into the staged folder before the one ``rename`` that publishes it; on
object stores: after every instance's PUT). A previous local version is moved to
``_attic/<run_id>/<path>`` (never deleted here: the engine decides whether the attic is
kept).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, date, datetime
from typing import Any

from mirror import __version__
from mirror.archive.port import SeriesRecord, StagedSeries
from mirror.errors import UsageError
from mirror.layout import SIDECAR_NAME, InstanceEntry, SeriesSidecar
from mirror.storage.keys import check_key
from mirror.storage.port import Store

log = logging.getLogger(__name__)

ATTIC = "_attic"
_BASE_FIELDS = frozenset(
    {
        "series_uid",
        "study_uid",
        "patient_id",
        "collection",
        "modality",
        "license_name",
        "license_uri",
    }
)


def check_run_id(run_id: str) -> str:
    if "/" in run_id or run_id.startswith("."):
        raise UsageError(f"run id {run_id!r} must be one plain path component")
    return check_key(run_id)


# --- sidecars ----------------------------------------------------------------------------


def listing_extra(record: SeriesRecord) -> dict[str, Any]:
    """The listing fields the sidecar has no column for (JSON-safe, empties dropped)."""
    extra: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name in _BASE_FIELDS or value in (None, ""):
            continue
        extra[f.name] = value.isoformat() if isinstance(value, date) else value
    return extra


def build_sidecar(
    record: SeriesRecord,
    path: str,
    instances: tuple[InstanceEntry, ...],
    *,
    series_version: int,
    run_id: str,
    md5_hierarchy: str = "",
    checks: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (),
) -> SeriesSidecar:
    extra = listing_extra(record)
    if checks:  # which checks each instance passed (IDC); NBIA's are uniform, see README
        extra["instance_checks"] = {name: dict(outcomes) for name, outcomes in checks}
    return SeriesSidecar(
        series_uid=record.series_uid,
        study_uid=record.study_uid,
        patient_id=record.patient_id,
        collection=record.collection,
        modality=record.modality,
        path=path,
        instances=tuple(sorted(instances, key=lambda i: i.name)),
        fingerprint=record.fingerprint,
        series_version=series_version,
        run_id=run_id,
        synced_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        license_name=record.license_name,
        license_uri=record.license_uri,
        extra=extra,
        md5_hierarchy=md5_hierarchy,
    )


def refreshed(
    sidecar: SeriesSidecar, record: SeriesRecord, md5_hierarchy: str = ""
) -> SeriesSidecar:
    """Same content, listing fields as they are now (fingerprint, license, extras) and
    the archive's series hash from this download (older sidecars lack it)."""
    extra = listing_extra(record)
    if "instance_checks" in sidecar.extra:  # the content is the same: so are its checks
        extra["instance_checks"] = sidecar.extra["instance_checks"]
    return dataclasses.replace(
        sidecar,
        md5_hierarchy=md5_hierarchy or sidecar.md5_hierarchy,
        modality=record.modality,
        fingerprint=record.fingerprint,
        license_name=record.license_name,
        license_uri=record.license_uri,
        extra=extra,
    )


def sidecar_key(path: str) -> str:
    return f"{path}/{SIDECAR_NAME}"


# --- commit ------------------------------------------------------------------------------


def publish(store: Store, staged: StagedSeries, sidecar: SeriesSidecar) -> None:
    """Publish the staged series through the Store port, sidecar last (the commit marker).

    The previous version goes to ``_attic/<run_id>/<path>`` where the store renames
    atomically; object stores overwrite it in place.
    """
    files: list[tuple[str, str | None]] = [(i.name, i.md5) for i in sidecar.instances]
    files += [(name, None) for name in staged.extra_files]
    store.publish_series(
        staged.directory,
        sidecar.path,
        files,
        (SIDECAR_NAME, sidecar.to_json()),
        attic=attic_base(sidecar.run_id, sidecar.path),
    )


def attic_base(run_id: str, path: str) -> str:
    """``_attic/<run_id>/<path>``; the store suffixes ``~2``, ``~3`` … if this run used it."""
    return f"{ATTIC}/{check_run_id(run_id)}/{path}"
