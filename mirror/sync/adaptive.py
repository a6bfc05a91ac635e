"""How many series to download at once: grow while throughput grows, back off on push-back.

A pure controller (no I/O, clock injected) that the engine consults after every finished
series. It works like TCP congestion control over whole series:

* **slow start**: every ``interval`` whose completed bytes rose by ``gain`` over the previous
  one doubles the window, from ``initial`` up to ``maximum`` (``--max-connections``, or
  what the cluster's download slots allow). Before anything has finished, long downloads
  give no evidence either way, and push-back (a 429 comes back within one request's
  latency) is the only signal there is: the window then doubles every ``probe`` seconds,
  as TCP doubles per round trip. Waiting whole intervals there left the largest series of
  a first mirror queued behind the first window and set the run's length;
* **grow only while it pays**: the first interval after a doubling that brings no such gain
  ends slow start, and the window returns to the last size that still paid (a saturated
  link or CPU gains nothing from more connections); from then on it probes one slot higher
  per interval only while the rate still rises;
* **back off on push-back**: a series that met 429/503/timeouts halves the window (never
  below ``minimum``) and freezes growth until its ``Retry-After`` (at least one interval) has
  passed; push-back from work submitted before that halving belongs to the same event and
  does not halve again. A server that caps connections sees the window settle under its cap
  instead of a storm of 429s;
* **shrink when the CPU is the limit**: a sample (after the first series finished) during
  which the host's CPUs were at least ``saturated`` busy ends slow start and halves the
  window, down to ``busy_floor``. More downloads cannot add throughput then; they add
  threads, buffers and contention (a 2-core host fetched 2 GB of stored ZIPs at 64
  downloads 20 % slower than at 8). Before anything has finished, a probe that reads the
  CPUs at least ``blind_saturated`` busy holds the blind ramp for that probe only (it may
  be workers still starting, which passes): a fast link that fills the CPUs at once would
  otherwise reach the cap before any series finishes, and then no shrink can recall the
  downloads already sent. The probe is given by the caller (``busy``: the host's busy
  fraction since the previous call, ``None`` when unknown, as for a remote cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]  # monotonic seconds
Busy = Callable[[], float | None]  # CPU busy fraction (0-1) since the previous call


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    initial: int = 16
    minimum: int = 1
    maximum: int = 64
    interval: float = 2.0  # seconds per throughput sample
    probe: float = 0.25  # seconds per doubling while nothing has finished and none pushed back
    gain: float = 0.05  # a rise below 5 % is noise, not a gain
    saturated: float = 0.9  # CPUs this busy over a sample: more downloads cannot help
    # A saturated CPU shrinks the window no further than this: fewer downloads would leave
    # cores idle while requests wait on the network.
    busy_floor: int = 8
    # Before anything finished, CPUs this busy hold the blind ramp. Lower than ``saturated``:
    # the first probes of a CPU-bound run (2 GB of stored ZIPs from a loopback archive on 2
    # cores) read 0.84-0.96, those of a wide-area run 0.30-0.69 (the same host, measured).
    blind_saturated: float = 0.8

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        if not 0 < self.saturated <= 1 or not 0 < self.blind_saturated <= 1:
            raise ValueError("need 0 < saturated <= 1 and 0 < blind_saturated <= 1")
        if self.probe <= 0 or self.interval <= 0:
            raise ValueError("need probe > 0 and interval > 0")


class ConcurrencyController:
    """``limit`` is the number of series the engine may have in flight right now."""

    def __init__(self, settings: AdaptiveSettings, clock: Clock, busy: Busy | None = None) -> None:
        self._s = settings
        self._clock = clock
        self._busy = busy
        self._limit = _clamp(settings.initial, settings.minimum, settings.maximum)
        self._slow_start = True
        self._frozen_until = float("-inf")
        self._window_start = clock()
        self._window_bytes = 0
        self._window_limit = self._limit  # the limit when the current sample began
        self._last_rate: float | None = None
        self._flat_samples = 0
        self._gain_limit = self._limit  # the last window whose sample still showed a gain
        self.backoffs = 0  # how often push-back halved the window (reported in summaries)
        self.saturations = 0  # how often a saturated CPU halved it
        self.epoch = 0  # bumped by each halving; callers tag work with the epoch it left in
        self.peak = self._limit

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def interval(self) -> float:
        """How often the engine should call :meth:`tick` when nothing comes back."""
        return self._period()

    def tick(self) -> None:
        """Time passed with nothing finished: close the sample if one is due."""
        self._sample(self._clock())

    def finished(
        self,
        nbytes: int,
        *,
        throttled: bool = False,
        retry_after: float = 0.0,
        epoch: int | None = None,
    ) -> None:
        """One series (or batch) came back: its bytes, whether it met push-back, and the
        ``epoch`` it was submitted in (work sent before the last halving cannot halve
        again: series refused together report one by one, like TCP's lost segments)."""
        now = self._clock()
        self._window_bytes += max(0, nbytes)
        if throttled:
            self._back_off(now, retry_after, epoch)
        self._sample(now)

    # --- internals -------------------------------------------------------------------------

    def _back_off(self, now: float, retry_after: float, epoch: int | None) -> None:
        self._frozen_until = max(self._frozen_until, now + max(retry_after, self._s.interval))
        if epoch is not None and epoch != self.epoch:
            return  # sent under a window already halved for this congestion: not news
        self._set(max(self._s.minimum, self._limit // 2))
        self._slow_start = False
        self.backoffs += 1
        self.epoch += 1
        self._restart_sample(now)
        self._last_rate = None

    def _period(self) -> float:
        return min(self._s.probe, self._s.interval) if self._blind() else self._s.interval

    def _blind(self) -> bool:
        """Slow start with nothing finished yet and no push-back: no rate to judge by."""
        return self._slow_start and self._last_rate is None and self._window_bytes == 0

    def _sample(self, now: float) -> None:
        elapsed = now - self._window_start
        if elapsed < self._period():
            return
        busy = self._busy() if self._busy is not None else None  # since the last sample
        if busy is not None:
            blind = self._blind()
            if blind and busy >= self._s.blind_saturated:
                self._restart_sample(now)  # hold: no doubling while the CPUs are this busy
                return
            if not blind and busy >= self._s.saturated:
                self._shrink(now)
                return
        rate = self._window_bytes / elapsed
        grew = self._limit > self._window_limit
        gained = self._last_rate is None or rate > self._last_rate * (1 + self._s.gain)
        if self._window_bytes == 0 and self._slow_start:
            gained = True  # nothing finished yet (long downloads): no evidence against growth
        self._flat_samples = 0 if gained or not grew else self._flat_samples + 1
        if self._slow_start and self._flat_samples >= 1:
            self._slow_start = False  # more connections, no more bytes
            self._set(self._gain_limit)  # back to the window that still paid
        elif gained and now >= self._frozen_until:
            if self._slow_start:
                self._gain_limit = self._limit
                self._set(self._limit * 2)  # slow start doubles per sample that pays
            else:
                self._set(self._limit + 1)  # steady state: probe one higher while it pays
        if self._window_bytes or self._last_rate is not None:
            self._last_rate = rate
        self._restart_sample(now)

    def _shrink(self, now: float) -> None:
        """The CPU was the limit over this sample: half the window (not below the floor),
        and growth resumes only from a sample that shows a gain over this one."""
        self._slow_start = False
        floor = max(self._s.minimum, min(self._s.busy_floor, self._limit))
        if self._limit > floor:
            self.saturations += 1
        self._set(max(floor, self._limit // 2))
        self._gain_limit = self._limit
        self._last_rate = self._window_bytes / max(now - self._window_start, 1e-9)
        self._restart_sample(now)

    def _restart_sample(self, now: float) -> None:
        self._window_start = now
        self._window_bytes = 0
        self._window_limit = self._limit

    def _set(self, value: int) -> None:
        self._limit = _clamp(value, self._s.minimum, self._s.maximum)
        self.peak = max(self.peak, self._limit)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
