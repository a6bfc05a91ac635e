"""Run summaries (JSON, sync-and-operations.md §5.3) and the Prometheus textfile (§5.4)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mirror.errors import EXIT_OK, EXIT_PARTIAL
from mirror.sync.manifest import write_text_atomic

log = logging.getLogger(__name__)

SUMMARY_SCHEMA_VERSION = 1
COUNT_KEYS = ("planned", "downloaded", "updated", "unchanged", "withdrawn", "failed", "verified")


@dataclass(frozen=True, slots=True)
class Failure:
    series_uid: str
    collection: str
    error_class: str
    message: str
    attempts: int
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    tool_version: str
    started_at: str
    finished_at: str
    duration_s: float
    mode: str  # sync | dry-run | full
    source: Mapping[str, str]
    destination: str
    cluster: Mapping[str, Any]
    exit_code: int
    watermark: Mapping[str, str | None]
    counts: Mapping[str, int]
    bytes: Mapping[str, int]
    retries: int = 0
    failures: tuple[Failure, ...] = ()
    plan: Mapping[str, Any] | None = None  # --dry-run only
    error: str = ""
    snapshot: Mapping[str, str] | None = None
    changed_files_path: str | None = None
    schema_version: int = SUMMARY_SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.exit_code == EXIT_OK:
            return "ok"
        if self.exit_code == EXIT_PARTIAL:
            return "partial"
        if self.exit_code in (6, 75, 130):
            return "aborted"
        return "failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        data["failures"] = [asdict(f) for f in self.failures]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, default=str) + "\n"


def write_summary(summary: RunSummary, path: str | Path) -> None:
    write_text_atomic(Path(path), summary.to_json())


METRIC_PREFIX = "tcia_mirror"


def write_metrics(
    path: str | Path,
    summary: RunSummary,
    series_states: Mapping[str, int],
    *,
    now: float,
) -> None:
    """Atomic ``.prom`` textfile; ``last_success`` survives runs that fail."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    target = Path(path)
    previous = read_last_success(target)
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{METRIC_PREFIX}_{name}", doc, labels, registry=registry)

    watermark = summary.watermark.get("after") or summary.watermark.get("before")
    if watermark:
        gauge("upstream_watermark_timestamp_seconds", "Watermark of the incremental listing").set(
            datetime.fromisoformat(watermark).replace(tzinfo=UTC).timestamp()
        )
    success = now if summary.exit_code == EXIT_OK else previous
    if success is not None:
        gauge("last_success_timestamp_seconds", "End of the last run that exited 0").set(success)
    gauge("last_run_timestamp_seconds", "End of the last run").set(now)
    gauge("last_exit_code", "Exit code of the last run").set(summary.exit_code)
    gauge("run_duration_seconds", "Duration of the last run").set(summary.duration_s)
    gauge("run_bytes_downloaded", "Bytes downloaded by the last run").set(
        summary.bytes.get("downloaded", 0)
    )
    outcomes = gauge("run_series_total", "Series per outcome in the last run", ("outcome",))
    for key in COUNT_KEYS:
        outcomes.labels(outcome=key).set(summary.counts.get(key, 0))
    states = gauge("series", "Series in the ledger per state", ("state",))
    for state in ("planned", "in_progress", "present", "failed", "withdrawn"):
        states.labels(state=state).set(series_states.get(state, 0))
    failures = gauge("run_failures", "Failed series per error class", ("error_class",))
    for error_class, n in _failure_counts(summary).items():
        failures.labels(error_class=error_class).set(n)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)


def _failure_counts(summary: RunSummary) -> dict[str, int]:
    counts: dict[str, int] = {}
    for failure in summary.failures:
        counts[failure.error_class] = counts.get(failure.error_class, 0) + 1
    return counts


def read_last_success(path: Path) -> float | None:
    """The previous file's ``last_success_timestamp_seconds`` (None if absent or unreadable)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    wanted = f"{METRIC_PREFIX}_last_success_timestamp_seconds"
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == wanted:
                    return float(sample.value)
    except ValueError:
        log.warning("ignoring unparsable metrics file %s", path)
    return None
