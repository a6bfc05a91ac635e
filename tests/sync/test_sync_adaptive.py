"""The adaptive download window: literal timelines through the pure controller (injected
clock), then the engine against a simulated archive that caps its connections."""

from __future__ import annotations

import pytest

from mirror.sync.adaptive import AdaptiveSettings, ConcurrencyController

MB = 2**20


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def controller(**kw: float) -> tuple[ConcurrencyController, Clock]:
    clock = Clock()
    return ConcurrencyController(AdaptiveSettings(**kw), clock), clock  # type: ignore[arg-type]


def test_slow_start_doubles_per_paying_interval_up_to_the_maximum() -> None:
    c, clock = controller(initial=4, maximum=20, interval=1.0)
    seen = []
    for second in range(1, 5):  # each second brings twice the bytes of the one before
        clock.now = float(second)
        c.finished(2**second * MB)
        seen.append(c.limit)
    assert seen == [8, 16, 20, 20]
    assert c.peak == 20


def test_push_back_halves_the_window_and_never_goes_below_the_minimum() -> None:
    c, clock = controller(initial=16, minimum=2, maximum=64, interval=2.0)
    seen = []
    for _ in range(5):  # one congestion event every 3 s
        clock.now += 3.0
        c.finished(0, throttled=True)
        seen.append(c.limit)
    assert seen == [8, 4, 2, 2, 2]
    assert c.backoffs == 5


def test_series_refused_together_halve_the_window_once() -> None:
    c, clock = controller(initial=16, maximum=64, interval=2.0)
    sent_in = c.epoch
    for _ in range(12):  # twelve series sent together, refused together, report one by one
        clock.now += 0.05
        c.finished(0, throttled=True, retry_after=1.0, epoch=sent_in)
    assert c.limit == 8 and c.backoffs == 1
    # Work sent under the halved window still meets push-back: that is a new event.
    c.finished(0, throttled=True, epoch=c.epoch)
    assert c.limit == 4 and c.backoffs == 2


def test_growth_waits_out_retry_after_then_resumes_only_while_throughput_rises() -> None:
    c, clock = controller(initial=8, maximum=64, interval=1.0)
    clock.now = 1.0
    c.finished(MB, throttled=True, retry_after=5.0)
    assert c.limit == 4
    # 1 MB every 0.1 s, steady: nothing grows during Retry-After, nor after it while flat.
    for _ in range(100):  # t = 1.1 … 11.0
        clock.now += 0.1
        c.finished(MB)
    assert c.limit == 4
    # The rate doubles (the archive freed up): one slot more per interval that shows a gain
    # (one or two intervals straddle the step), then none while the new rate stays flat.
    for _ in range(20):  # t = 11.1 … 13.0, 2 MB per 0.1 s
        clock.now += 0.1
        c.finished(2 * MB)
    grown = c.limit
    assert grown in (5, 6)
    for _ in range(50):
        clock.now += 0.1
        c.finished(2 * MB)
    assert c.limit == grown


def test_slow_start_ends_when_more_connections_bring_no_more_bytes() -> None:
    c, clock = controller(initial=4, maximum=64, interval=1.0)
    # A saturated link: 10 MB/s whatever the window (one 1 MB series every 0.1 s).
    for _ in range(60):
        clock.now += 0.1
        c.finished(MB)
    plateau = c.limit
    assert 4 < plateau < 64
    for _ in range(50):
        clock.now += 0.1
        c.finished(MB)
    assert c.limit == plateau  # held: a flat sample after growing stopped it


def test_slow_start_keeps_growing_while_each_sample_brings_more_bytes() -> None:
    c, clock = controller(initial=2, maximum=40, interval=1.0)
    # Throughput proportional to the window (a link far from saturated).
    seen = []
    for _ in range(300):
        clock.now += 1.0 / c.limit
        c.finished(MB)
        seen.append(c.limit)
    assert seen == sorted(seen) and c.limit == 40  # up to the maximum, never back
    assert c.backoffs == 0


def test_long_downloads_double_the_window_per_probe_before_any_finishes() -> None:
    c, clock = controller(initial=8, maximum=64, interval=2.0, probe=0.5)
    assert c.interval == 0.5  # the engine ticks at half of this while nothing comes back
    seen = []
    for _ in range(10):
        clock.now += 0.25
        c.tick()
        seen.append(c.limit)
    assert seen == [8, 16, 16, 32, 32, 64, 64, 64, 64, 64]


def test_the_first_finished_series_ends_the_blind_ramp() -> None:
    c, clock = controller(initial=8, maximum=64, interval=2.0, probe=0.5)
    clock.now = 0.5
    c.tick()
    assert c.limit == 16
    clock.now = 0.7
    c.finished(MB)  # evidence now exists: samples go back to whole intervals
    assert c.interval == 2.0
    clock.now = 1.0
    c.tick()
    assert c.limit == 16
    clock.now = 2.5
    c.tick()  # the first whole interval (0.5..2.5 s) has a rate: slow start doubles
    assert c.limit == 32


def test_push_back_during_the_blind_ramp_halves_and_stops_it() -> None:
    c, clock = controller(initial=16, maximum=64, interval=2.0, probe=0.5)
    clock.now = 0.5
    c.tick()
    assert c.limit == 32
    clock.now = 0.6
    c.finished(0, throttled=True, retry_after=1.0, epoch=c.epoch)
    assert c.limit == 16 and c.backoffs == 1 and c.interval == 2.0
    for step in range(1, 8):  # frozen until Retry-After, then no blind doubling again
        clock.now = 0.6 + 0.25 * step
        c.tick()
        assert c.limit == 16


def test_a_saturated_link_ends_slow_start_at_the_last_window_that_paid() -> None:
    c, clock = controller(initial=4, maximum=64, interval=1.0)
    # 1 MB per series; the link carries 2 MB/s per slot up to 8 slots, then no more.
    for _ in range(400):
        clock.now += 1.0 / (2 * min(c.limit, 8))
        c.finished(MB)
    assert 8 <= c.limit <= 16


class Cpu:
    """A scripted CPU probe: the busy fraction the next sample reads, and how often it was read."""

    def __init__(self, busy: float | None) -> None:
        self.busy = busy
        self.reads = 0

    def __call__(self) -> float | None:
        self.reads += 1
        return self.busy


def busy_controller(cpu: Cpu, **kw: float) -> tuple[ConcurrencyController, Clock]:
    clock = Clock()
    return ConcurrencyController(AdaptiveSettings(**kw), clock, cpu), clock  # type: ignore[arg-type]


def test_a_saturated_cpu_halves_the_window_per_sample_down_to_the_floor() -> None:
    cpu = Cpu(0.97)
    c, clock = busy_controller(cpu, initial=64, maximum=64, interval=1.0, busy_floor=8)
    seen = []
    for _ in range(5):  # 1 MB per second at every window: the CPU, not the link, is the limit
        clock.now += 1.0
        c.finished(MB)
        seen.append(c.limit)
    assert seen == [32, 16, 8, 8, 8]
    assert c.saturations == 3 and c.backoffs == 0


def test_after_a_saturated_sample_growth_resumes_only_on_a_gain() -> None:
    cpu = Cpu(0.95)
    c, clock = busy_controller(cpu, initial=32, maximum=64, interval=1.0)
    clock.now = 1.0
    c.finished(4 * MB)
    assert c.limit == 16
    cpu.busy = 0.5  # the CPU has room again, and the rate holds: no reason to grow
    for _ in range(3):
        clock.now += 1.0
        c.finished(4 * MB)
    assert c.limit == 16
    clock.now += 1.0
    c.finished(8 * MB)  # the rate rises: one slot more, not slow start again
    assert c.limit == 17


def test_a_saturated_cpu_holds_the_blind_ramp_only_while_it_lasts() -> None:
    # Nothing finished yet and CPUs 85 % busy (a fast link filling them, or workers starting):
    # that holds the blind ramp, though it would not shrink a window once a rate is known.
    cpu = Cpu(0.85)
    c, clock = busy_controller(cpu, initial=4, maximum=64, interval=2.0, probe=0.25)
    for _ in range(3):
        clock.now += 0.25
        c.tick()
    assert c.limit == 4 and cpu.reads == 3 and c.saturations == 0
    cpu.busy = 0.4  # start-up is over and the CPUs have room: the ramp goes on, per probe
    for _ in range(3):
        clock.now += 0.25
        c.tick()
    assert c.limit == 32


def test_unknown_load_is_ignored() -> None:
    unknown = Cpu(None)  # a remote cluster: the driver's host says nothing about the workers
    c, clock = busy_controller(unknown, initial=4, maximum=20, interval=1.0)
    for second in range(1, 5):
        clock.now = float(second)
        c.finished(2**second * MB)
    assert c.limit == 20 and c.saturations == 0


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        AdaptiveSettings(minimum=0)
    with pytest.raises(ValueError):
        AdaptiveSettings(minimum=8, maximum=4)
    with pytest.raises(ValueError):
        AdaptiveSettings(probe=0.0)
    with pytest.raises(ValueError):
        AdaptiveSettings(saturated=0.0)
    c, _ = controller(initial=100, maximum=8)
    assert c.limit == 8


# --- the engine against an archive that caps its connections -------------------------------


def getimage_requests(server) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for r in server.requests if r.path.endswith("/getImage"))


@pytest.mark.slow
def test_a_connection_capped_archive_sees_the_window_shrink_not_a_429_storm(  # type: ignore[no-untyped-def]
    sim, archive_server, archive, config, tmp_path, monkeypatch
) -> None:
    from dataclasses import replace

    from mirror.archive.sim import FaultConfig
    from mirror.cli.compose import sync
    from mirror.config import ClusterConfig
    from mirror.sync import run as run_mod
    from mirror.sync.task import FetchSettings

    for i in range(48):  # over 2 MB each, so each is its own Dask task (no batches)
        sim.add_series("Sim-Lung", patient_id=f"CAP-{i:02d}", n_instances=5, rows=512, cols=512)
    n_series = len(sim.series_uids())
    # Four connections at a time; a fifth gets 429 with Retry-After: 1, which the tasks
    # honour for at most 0.2 s here (so the test stays short).
    sim.faults = FaultConfig(max_connections=4, over_limit_status=429, latency=0.1)
    settings = FetchSettings(backoff_initial=0.0, backoff_max=0.2)
    wide = replace(config, cluster=ClusterConfig(workers=0, threads=16, http_slots=16))

    def refusals_of(cfg) -> tuple[int, object]:  # type: ignore[no-untyped-def]
        archive_server.requests.clear()
        summary = sync(cfg, archive=archive, today=lambda: sim.today, fetch_settings=settings)
        return getimage_requests(archive_server) - n_series, summary

    adaptive_refusals, adaptive = refusals_of(wide)
    assert adaptive.exit_code == 0, adaptive.failures  # type: ignore[attr-defined]
    concurrency = adaptive.cluster["concurrency"]  # type: ignore[attr-defined]
    # Settled at the cap: additive increase may be probing one slot above it when the run
    # ends (that probe's refusal is what halves it again), never more.
    assert concurrency["final"] <= 4 + 1 and concurrency["backoffs"] >= 1

    # Control: the same run with the window fixed at 16 (what the engine did before).
    fixed = run_mod.AdaptiveSettings(initial=16, minimum=16, maximum=16)
    monkeypatch.setattr(run_mod, "adaptive_settings", lambda slots, cluster: fixed)
    control_refusals, _ = refusals_of(replace(wide, dest=str(tmp_path / "control")))
    assert control_refusals > 2 * max(adaptive_refusals, 1), (adaptive_refusals, control_refusals, concurrency)


@pytest.mark.slow
def test_a_cpu_bound_run_shrinks_the_window_to_the_floor_and_still_mirrors_everything(  # type: ignore[no-untyped-def]
    sim, archive, config, monkeypatch
) -> None:
    from dataclasses import replace

    from mirror.archive.sim import FaultConfig
    from mirror.cli.compose import sync
    from mirror.config import ClusterConfig
    from mirror.sync import cluster as cluster_mod
    from mirror.sync import run as run_mod

    for i in range(40):
        sim.add_series("Sim-Lung", patient_id=f"CPU-{i:02d}", n_instances=3, rows=256, cols=256)
    sim.faults = FaultConfig(latency=0.05)
    # Samples every 50 ms, and a host whose CPUs read saturated every time.
    quick = run_mod.AdaptiveSettings(initial=32, maximum=32, interval=0.05, probe=0.01)
    monkeypatch.setattr(run_mod, "adaptive_settings", lambda slots, cluster: quick)
    monkeypatch.setattr(cluster_mod.ClusterHandle, "cpu_probe", lambda self: lambda: 1.0)
    wide = replace(config, cluster=ClusterConfig(workers=0, threads=32, http_slots=32))
    summary = sync(wide, archive=archive, today=lambda: sim.today)
    assert summary.exit_code == 0, summary.failures
    concurrency = summary.cluster["concurrency"]
    assert concurrency["final"] == quick.busy_floor and concurrency["cpu_saturated"] >= 1
    assert concurrency["backoffs"] == 0
    assert summary.counts["downloaded"] == len(sim.series_uids())
