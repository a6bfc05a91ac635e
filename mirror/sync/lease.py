"""The destination lease: one sync per destination, whatever each run's state dir.

The per-state-dir flock (:mod:`mirror.sync.lock`) cannot see a run that keeps its ledger
elsewhere, or on another host. The lease is one small object in the destination itself,
``_locks/sync.lease``, written only through the Store port's compare-and-swap
(``put_if``: S3 ``If-None-Match: *`` to take it, ``If-Match`` to renew or take over):

* acquire: create it; if it exists and its ``expires_at`` has passed, replace exactly the
  version read (two late-comers cannot both win); otherwise raise LockHeld (exit 75);
* renew: a background thread rewrites it every third of the lease duration, conditional
  on the version it wrote last; losing that race means another run took over after this
  one stalled past expiry, so the run is told to stop (``lost``);
* release: delete it, only if it is still ours.

A holder killed with SIGKILL leaves the object behind. On the holder's own host (same hostname
and pid namespace) the next run sees that its pid is gone and takes over at once (a stale
pidfile); elsewhere the lease blocks
later runs until its ``expires_at`` (holder's wall clock plus the duration). Hosts sharing a
destination need clocks within a small fraction of the duration (NTP).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType

from mirror.config import DEFAULT_LEASE_SECONDS
from mirror.errors import LeaseLost, LockHeld, ObjectNotFound, PreconditionFailed, StoreError
from mirror.storage.port import Store

log = logging.getLogger(__name__)

LEASE_KEY = "_locks/sync.lease"

Clock = Callable[[], float]  # wall-clock seconds since the epoch (time.time)


def pid_namespace() -> str:
    """This process's pid namespace (containers sharing a hostname still differ here)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 probes, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease object's content (JSON); times are epoch seconds of the holder's clock."""

    run_id: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float
    pidns: str = ""  # where ``pid`` means something (see pid_namespace)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord | None:
        """None for an unreadable object (a foreign or truncated file): treated as expired."""
        try:
            raw = json.loads(data)
            return cls(
                str(raw["run_id"]),
                str(raw["host"]),
                int(raw["pid"]),
                float(raw["acquired_at"]),
                float(raw["expires_at"]),
                str(raw.get("pidns", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return f"run {self.run_id}, pid {self.pid} on {self.host}, lease until {until}"


class DestinationLease:
    """``with DestinationLease(store, run_id):`` holds the lease and keeps renewing it."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        duration: float = DEFAULT_LEASE_SECONDS,
        clock: Clock = time.time,
        host: str | None = None,
        alive: Callable[[int], bool] = pid_alive,
        pidns: str | None = None,
    ) -> None:
        if duration <= 0:
            raise ValueError("lease duration must be positive")
        self._store = store
        self._run_id = run_id
        self._duration = duration
        self._clock = clock
        self._host = host or socket.gethostname()
        self._alive = alive
        self._pidns = pid_namespace() if pidns is None else pidns
        self._token: str | None = None
        self._acquired_at = 0.0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    @property
    def held(self) -> bool:
        return self._token is not None and not self.lost

    # --- the three moves -------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease or raise LockHeld naming the holder."""
        self._acquired_at = self._clock()
        try:
            self._token = self._store.put_if(LEASE_KEY, self._record(), token=None)
            return
        except PreconditionFailed:
            pass
        try:
            data, token = self._store.get_with_token(LEASE_KEY)
        except ObjectNotFound:  # released between our two calls: try once more
            self._token = self._take(None, "the lease was just released")
            return
        holder = LeaseRecord.from_bytes(data)
        if holder is not None and not self._stale(holder):
            where = f"{self._store.url}/{LEASE_KEY}"
            raise LockHeld(f"another sync holds {where} ({holder.describe()})")
        what = holder.describe() if holder else "an unreadable lease"
        self._token = self._take(token, f"taking over the stale lease of {what}")

    def _stale(self, holder: LeaseRecord) -> bool:
        if holder.expires_at <= self._clock():
            return True
        same_pids = holder.host == self._host and holder.pidns == self._pidns != ""
        return same_pids and not self._alive(holder.pid)

    def renew(self) -> None:
        """Extend the lease; LeaseLost if another run replaced or removed it."""
        if self._token is None:
            raise LeaseLost("the destination lease is not held")
        try:
            self._token = self._store.put_if(LEASE_KEY, self._record(), token=self._token)
        except PreconditionFailed as exc:
            self._lost.set()
            raise LeaseLost(
                f"{self._store.url}/{LEASE_KEY} was taken over or removed while this run "
                "held it (stalled past the lease duration?)"
            ) from exc

    def release(self) -> None:
        """Delete the lease if still ours; a takeover the renewer missed marks it lost."""
        self._stop_renewing()
        if self._token is None or self.lost:
            self._token = None
            return
        try:
            self.renew()  # proves it is still ours (a conditional delete of a vanished
            self._store.delete_if(LEASE_KEY, self._token)  # object proves nothing)
        except LeaseLost as exc:
            log.error("%s", exc)
        except StoreError as exc:  # it expires by itself; say so and move on
            log.warning("could not release %s: %s", LEASE_KEY, exc)
        self._token = None

    # --- internals -------------------------------------------------------------------------

    def _take(self, token: str | None, why: str) -> str:
        try:
            new_token = self._store.put_if(LEASE_KEY, self._record(), token=token)
        except PreconditionFailed as exc:  # another late-comer won the same race
            raise LockHeld(f"another sync just took {self._store.url}/{LEASE_KEY}") from exc
        log.warning("%s: %s", self._store.url, why)
        return new_token

    def _record(self) -> bytes:
        return LeaseRecord(
            run_id=self._run_id,
            host=self._host,
            pidns=self._pidns,
            pid=os.getpid(),
            acquired_at=self._acquired_at,
            expires_at=self._clock() + self._duration,
        ).to_bytes()

    def _renew_loop(self) -> None:
        interval = self._duration / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost as exc:
                log.error("%s", exc)
                return
            except StoreError as exc:  # transient: two more tries before it expires
                log.warning("lease renewal failed, retrying: %s", exc)

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None

    def start(self) -> None:
        """Acquire, then keep renewing in a background thread until :meth:`release`."""
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._renewer.start()

    def __enter__(self) -> DestinationLease:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
