"""The wide-area bound: how fast the simulated archive lets anyone fetch these exact series.

The simulated archive (``mirror archive serve --latency L --bandwidth B --max-connections C``)
sleeps ``L`` seconds before answering each request, paces each streamed response at ``B``
bytes per second, and answers 429 to any request beyond ``C`` in flight. Fetching one series is
one ``getImage`` request, so it occupies one connection for ``L + size / B`` seconds, whatever
the client does. With no CPU cost at all:

* ``bound``: no client finishes sooner than the slowest single series, nor sooner than the
  connection-seconds of all series spread over the ``C`` connections the archive admits. The
  larger of the two is the limit quoted in the README (a lower bound on the time, so an upper
  bound on files/s).
* ``schedule``: the time a client takes that keeps ``k`` series in flight, starting the next
  one (in listing order) as soon as one finishes. It predicts a contender's time from its
  connection count alone; a contender close to it is limited by its concurrency, not its CPU.

Sizes are the bytes each ``getImage`` response carries (the ZIP: DICOM files, headers,
``md5hashes.csv``), measured once per run. Listing requests (``getSeries``: one latency each)
are not included; a contender that lists first pays them on top.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def request_seconds(sizes: Sequence[int], latency: float, bandwidth: float) -> list[float]:
    """Seconds one connection is busy per series: the added latency plus the paced transfer."""
    if latency < 0 or bandwidth <= 0:
        raise ValueError("latency must be >= 0 and bandwidth > 0")
    return [latency + size / bandwidth for size in sizes]


def bound(sizes: Sequence[int], latency: float, bandwidth: float, connections: int) -> float:
    """Least seconds any client needs for ``sizes`` under the archive's cap of ``connections``."""
    if connections < 1:
        raise ValueError("connections must be >= 1")
    busy = request_seconds(sizes, latency, bandwidth)
    if not busy:
        return 0.0
    return max(*busy, sum(busy) / connections)


def schedule(sizes: Sequence[int], latency: float, bandwidth: float, concurrency: int) -> float:
    """Seconds for a client keeping ``concurrency`` series in flight, in the given order."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    free = [0.0] * min(concurrency, max(len(sizes), 1))
    for busy in request_seconds(sizes, latency, bandwidth):
        start = heapq.heappop(free)
        heapq.heappush(free, start + busy)
    return max(free)
