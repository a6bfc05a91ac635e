"""The simulated archive's catalogue, its mutations and its simulated clock.

Only small metadata lives in memory; instance bytes are regenerated from
:class:`~mirror.archive.sim.dicomgen.InstanceSpec` (optionally cached under ``data_dir``).
Sizes and MD5s are computed once per instance version and memoised.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from mirror.archive.port import SeriesRecord
from mirror.archive.sim import dicomgen
from mirror.archive.sim.dicomgen import InstanceSpec, make_uid
from mirror.archive.sim.faults import FaultConfig, FaultState
from mirror.archive.sim.records import SimInstance, SimSeries
from mirror.errors import UsageError

DEFAULT_TODAY = date(2025, 1, 15)
RELEASE_HOUR = 12  # releases happen at noon, so fromDate=<that day> (after 00:00) finds them


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    size: int
    md5: str  # normalised 32-hex of the bytes served


class SimArchive:
    """An in-memory NBIA catalogue that serves real, reproducible DICOM bytes.

    ``clock`` (monotonic seconds) drives token expiry and bandwidth pacing, ``sleep`` is
    how latency and bandwidth caps wait: tests inject both so nothing sleeps for real.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        today: date = DEFAULT_TODAY,
        data_dir: Path | str | None = None,
        compresslevel: int = 6,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seed = seed
        self.today = today
        self.data_dir = Path(data_dir) if data_dir else None
        self.compresslevel = compresslevel
        self.clock = clock
        self.sleep = sleep
        self.supports_include_md5 = True  # False: an "old server" that 400s IncludeMD5
        self.token_ttl = 3600.0
        self.users: dict[str, str] = {}
        self._series: dict[str, SimSeries] = {}
        self._facts: dict[tuple[str, str, int], InstanceFacts] = {}
        self._unit_sizes: dict[str, int] = {}
        self._lock = threading.RLock()
        self._fault_state = FaultState(FaultConfig(), seed=seed)
        # getMD5Hierarchy's collection level upstream is a cache a background job fills;
        # empty here means "always fresh". Tests fill it (api.cache_collection_md5) to
        # play a cache that lags behind the content.
        self.collection_md5_cache: dict[str, str] = {}

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._fault_state.config

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        self._fault_state = FaultState(config, seed=self.seed)

    def set_faults(self, **kwargs: object) -> FaultConfig:
        """Replace the fault configuration (fields of :class:`FaultConfig`)."""
        self.faults = FaultConfig.from_json(dict(kwargs))
        return self.faults

    @property
    def fault_state(self) -> FaultState:
        return self._fault_state

    # --- building and mutating ------------------------------------------------------------

    def add_series(
        self,
        collection: str,
        *,
        patient_id: str,
        modality: str = "CT",
        n_instances: int = 3,
        rows: int = 32,
        cols: int = 32,
        study_uid: str | None = None,
        series_uid: str | None = None,
        description: str | None = None,
        body_part: str = "CHEST",
        manufacturer: str = "SIMULATED",
        acquisitions: int = 1,
        shuffle: bool = False,
        study_date: date | None = None,
    ) -> str:
        """Add a visible series released ``today``; returns its SeriesInstanceUID."""
        if not modality.isalnum() or n_instances < 0 or min(rows, cols) < 1:
            raise UsageError(f"bad series shape: {modality!r} {n_instances}x{rows}x{cols}")
        with self._lock:
            number = len(self._series) + 1
            uid = series_uid or make_uid(self.seed, "series", collection, patient_id, number)
            if uid in self._series:
                raise UsageError(f"series {uid} already exists")
            study = study_uid or make_uid(self.seed, "study", collection, patient_id)
            series = SimSeries(
                uid=uid,
                study_uid=study,
                patient_id=patient_id,
                collection=collection,
                modality=modality,
                rows=rows,
                cols=cols,
                frame_uid=make_uid(self.seed, "frame", study),
                series_number=number,
                description=description or f"{modality} series {number}",
                body_part=body_part,
                manufacturer=manufacturer,
                study_date=study_date or date(2010, 1, 1),
                released=self._now(),
                max_submission=self.today,
            )
            series.instances = _make_instances(self.seed, uid, n_instances, acquisitions, shuffle)
            self._series[uid] = series
            return uid

    def replace_instance(self, uid: str, index: int = 0, *, rerelease: bool = True) -> None:
        """New bytes (and MD5), same size, for one instance; the series is re-released
        today unless ``rerelease=False``: a silent change that no listing field shows,
        only ``getMD5Hierarchy``."""
        with self._lock:
            series = self._get(uid)
            series.instances[index].version += 1
            if rerelease:
                self._touch(series)

    def rerelease_series(self, uid: str) -> None:
        """A new DateReleased for unchanged content (upstream re-releases happen)."""
        with self._lock:
            self._touch(self._get(uid))

    def add_instances(self, uid: str, count: int = 1) -> None:
        """Append slices (ImageCount and FileSize change); re-released today."""
        with self._lock:
            series = self._get(uid)
            start = len(series.instances)
            for pos in range(start, start + count):
                sop = make_uid(self.seed, "sop", uid, pos)
                series.instances.append(SimInstance(sop, pos, pos + 1))
            self._touch(series)

    def withdraw_series(self, uid: str) -> None:
        """Hide a series: it leaves every listing and downloads answer 400 not granted."""
        with self._lock:
            self._get(uid).visible = False

    def restore_series(self, uid: str) -> None:
        with self._lock:
            series = self._get(uid)
            series.visible = True
            series.released = self._now()

    def _touch(self, series: SimSeries) -> None:
        series.released = self._now()
        series.max_submission = self.today

    def _now(self) -> datetime:
        return datetime(self.today.year, self.today.month, self.today.day, RELEASE_HOUR)

    # --- reading ----------------------------------------------------------------------------

    def _get(self, uid: str) -> SimSeries:
        try:
            return self._series[uid]
        except KeyError:
            raise UsageError(f"no such series {uid}") from None

    def get_series(self, uid: str, *, visible_only: bool = True) -> SimSeries | None:
        with self._lock:
            series = self._series.get(uid)
        if series is None or (visible_only and not series.visible):
            return None
        return series

    def all_series(self, *, visible_only: bool = True) -> list[SimSeries]:
        with self._lock:
            return [s for s in self._series.values() if s.visible or not visible_only]

    def series_uids(self, collection: str | None = None) -> list[str]:
        """Visible series, optionally of one collection (case-insensitive)."""
        wanted = collection.upper() if collection else None
        return [s.uid for s in self.all_series() if wanted in (None, s.collection.upper())]

    def spec(self, series: SimSeries, index: int) -> InstanceSpec:
        inst = series.instances[index]
        return InstanceSpec(
            seed=self.seed,
            collection=series.collection,
            patient_id=series.patient_id,
            study_uid=series.study_uid,
            series_uid=series.uid,
            sop_uid=inst.sop_uid,
            frame_uid=series.frame_uid,
            modality=series.modality,
            index=inst.position,
            version=inst.version,
            instance_number=inst.instance_number,
            acquisition_number=inst.acquisition_number,
            rows=series.rows,
            cols=series.cols,
            series_number=series.series_number,
            series_description=series.description,
            body_part=series.body_part,
            manufacturer=series.manufacturer,
            study_date=series.study_date,
        )

    def instance_bytes(self, uid: str, index: int) -> bytes:
        """The exact bytes served for instance ``index`` (database order)."""
        spec = self.spec(self._get(uid), index)
        data = self._cached_bytes(spec)
        if len(data) != self.instance_size(uid):
            # FileSize in listings is computed from this invariant; never serve a lie.
            raise RuntimeError(f"instance size drifted for {uid}[{index}]")
        self._remember(spec, InstanceFacts(len(data), hashlib.md5(data).hexdigest()))
        return data

    def _cached_bytes(self, spec: InstanceSpec) -> bytes:
        if self.data_dir is None:
            return dicomgen.instance_bytes(spec)
        path = self.data_dir / spec.series_uid / f"{spec.sop_uid}-v{spec.version}.dcm"
        if path.exists():
            return path.read_bytes()
        data = dicomgen.instance_bytes(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{threading.get_ident()}")
        tmp.write_bytes(data)
        tmp.replace(path)
        return data

    def _remember(self, spec: InstanceSpec, facts: InstanceFacts) -> None:
        with self._lock:
            self._facts[(spec.series_uid, spec.sop_uid, spec.version)] = facts

    def _known(self, spec: InstanceSpec) -> InstanceFacts | None:
        with self._lock:
            return self._facts.get((spec.series_uid, spec.sop_uid, spec.version))

    def instance_size(self, uid: str, index: int = 0) -> int:
        """Every instance of a series has the same size (fixed-width varying fields)."""
        with self._lock:
            size = self._unit_sizes.get(uid)
        if size is None:
            size = dicomgen.instance_size(self.spec(self._get(uid), index))
            with self._lock:
                self._unit_sizes[uid] = size
        return size

    def file_size(self, uid: str) -> int:
        """``FileSize``: the sum of the stored DICOM file sizes."""
        return self.instance_size(uid) * len(self._get(uid).instances)

    def true_md5(self, uid: str, index: int) -> str:
        spec = self.spec(self._get(uid), index)
        known = self._known(spec)
        return known.md5 if known else hashlib.md5(self.instance_bytes(uid, index)).hexdigest()

    def true_md5s(self, uid: str) -> list[str]:
        """Normalised 32-hex MD5 of every instance's served bytes, in database order."""
        return [self.true_md5(uid, i) for i in range(len(self._get(uid).instances))]

    def stored_md5(self, uid: str, index: int) -> str:
        """What ``md5hashes.csv`` says: CTP-style (no leading zeros), or wrong on purpose."""
        digest = self.true_md5(uid, index)
        if (uid, index) in self.faults.wrong_md5:
            digest = hashlib.md5(digest.encode()).hexdigest()
        return digest.lstrip("0") or "0"

    def record(self, uid: str) -> SeriesRecord:
        """The :class:`SeriesRecord` a client parses from this series' getSeries row."""
        from mirror.archive.parse import series_record
        from mirror.archive.sim.rows import series_row

        return series_record(series_row(self, self._get(uid)))


def _make_instances(
    seed: int, uid: str, count: int, acquisitions: int, shuffle: bool
) -> list[SimInstance]:
    per_acq = max(1, -(-count // max(1, acquisitions)))
    out = [
        SimInstance(make_uid(seed, "sop", uid, pos), pos, pos + 1, 1 + pos // per_acq)
        for pos in range(count)
    ]
    if shuffle:
        # Database order is unspecified upstream: %08d names need not follow InstanceNumber.
        random.Random(f"{seed}:{uid}").shuffle(out)
    return out
