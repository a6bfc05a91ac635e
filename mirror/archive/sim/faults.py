"""Injectable faults for the simulated archive.

:class:`FaultConfig` is plain configuration. Counters ("the next N downloads fail") are
consumed from a :class:`FaultState` so tests can say exactly which request breaks; rates
draw from a seeded generator so randomised runs replay identically.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any

from mirror.errors import UsageError

COUNTERS = (
    "fail_next",
    "rate_limit_next",
    "metadata_fail_next",
    "metadata_rate_limit_next",
    "truncate_next",
    "short_next",
    "license_only_next",
    "withdraw_next",
    "hostile_name_next",
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What the simulated archive does wrong. Download faults hit getImage and
    getImageWithMD5Hash only (and only ``series`` when that set is non-empty)."""

    error_rate: float = 0.0  # seeded probability of a 500 per download
    rate_limit_rate: float = 0.0  # seeded probability of a 429 per download
    retry_after: float | None = 1.0  # Retry-After seconds sent with 429/503 (None: no header)
    fail_next: int = 0  # the next N downloads answer 500
    rate_limit_next: int = 0  # the next N downloads answer 429
    metadata_fail_next: int = 0  # the next N metadata (JSON) requests answer 500
    metadata_rate_limit_next: int = 0  # the next N metadata requests answer 429
    truncate_next: int = 0  # the next N downloads drop the connection mid-zip
    truncate_after: int = 2048  # ... after this many body bytes
    short_next: int = 0  # the next N downloads are valid zips missing `short_missing` images
    short_missing: int = 1
    license_only_next: int = 0  # the next N downloads hold only LICENSE
    withdraw_next: int = 0  # the next N downloads find their series withdrawn first
    hostile_name_next: int = 0  # the next N zips name their first image `hostile_name`
    hostile_name: str = "../../escaped.dcm"
    wrong_md5: frozenset[tuple[str, int]] = frozenset()  # (series, index): csv value != bytes
    series: frozenset[str] = frozenset()  # restrict download faults to these series
    token_ttl: float | None = None  # tokens expire after T seconds (default: 3600)
    latency: float = 0.0  # seconds added to every request (through the injected sleep)
    row_latency: float = 0.0  # seconds per result row of a listing (slow big getSeries)
    bandwidth: int | None = None  # bytes per second per response (token bucket)
    max_connections: int | None = None  # concurrent requests beyond this get over_limit_status
    over_limit_status: int = 429

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        """Build from the admin endpoint's JSON (lists instead of sets)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown fault fields: {sorted(unknown)}")
        values = dict(data)
        if "wrong_md5" in values:
            values["wrong_md5"] = frozenset((str(s), int(i)) for s, i in values["wrong_md5"])
        if "series" in values:
            values["series"] = frozenset(str(s) for s in values["series"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["wrong_md5"] = sorted([s, i] for s, i in self.wrong_md5)
        out["series"] = sorted(self.series)
        return out


@dataclass(slots=True)
class FaultState:
    """The consumable part of a :class:`FaultConfig` (thread-safe)."""

    config: FaultConfig
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.counts = {name: int(getattr(self.config, name)) for name in COUNTERS}
        self._rng = random.Random(self.seed)

    def take(self, name: str) -> bool:
        """Consume one unit of counter ``name``; True if the fault fires now."""
        with self._lock:
            if self.counts.get(name, 0) <= 0:
                return False
            self.counts[name] -= 1
            return True

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def targets(self, series_uid: str) -> bool:
        return not self.config.series or series_uid in self.config.series
