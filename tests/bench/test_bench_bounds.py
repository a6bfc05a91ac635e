"""Units of the benchmark harness: the wide-area bound, the list-schedule model, the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _common
import bounds

MB = 1_000_000


def test_cap_above_series_count_is_one_latency_plus_largest() -> None:
    sizes = [31_500_000, 10 * MB, 2 * MB]
    got = bounds.bound(sizes, latency=0.2, bandwidth=2_500_000, connections=64)
    assert got == pytest.approx(0.2 + 31.5 / 2.5)


def test_cap_below_series_count_spreads_connection_seconds() -> None:
    sizes = [10 * MB] * 8  # each 0.1 + 10 s; 8 of them over 2 connections
    got = bounds.bound(sizes, latency=0.1, bandwidth=MB, connections=2)
    assert got == pytest.approx(8 * 10.1 / 2)


def test_bound_never_exceeds_any_schedule() -> None:
    sizes = [3 * MB, 1 * MB, 7 * MB, 2 * MB, 5 * MB, 1 * MB, 4 * MB]
    for cap in range(1, 9):
        limit = bounds.bound(sizes, 0.3, MB, cap)
        assert limit <= bounds.schedule(sizes, 0.3, MB, cap) + 1e-9


def test_schedule_in_order() -> None:
    # two slots: [4, 1, 1, 1] -> slot A runs 4; slot B runs 1, 1, 1 -> 4 s
    assert bounds.schedule([4, 1, 1, 1], 0.0, 1, 2) == pytest.approx(4.0)
    # one slot: the sum; more slots than series: the largest
    assert bounds.schedule([4, 1, 1], 0.5, 1, 1) == pytest.approx(7.5)
    assert bounds.schedule([4, 1, 1], 0.5, 1, 10) == pytest.approx(4.5)


def test_issue_figures_reproduce() -> None:
    """The sync_wan shape of issue 14: 52 series, largest 31.5 MB, 64 connections."""
    sizes = [31_500_000] + [15_000_000] * 51
    assert bounds.bound(sizes, 0.2, 2_500_000, 64) == pytest.approx(12.8)


@pytest.mark.parametrize(
    ("args", "match"),
    [((1, 0.0, 0, 1), "bandwidth"), ((1, -1.0, 1, 1), "latency"), ((1, 0.0, 1, 0), "connec")],
)
def test_bad_arguments(args: tuple[int, float, int, int], match: str) -> None:
    size, latency, bandwidth, conns = args
    with pytest.raises(ValueError, match=match):
        bounds.bound([size], latency, bandwidth, conns)


def _result(folder: Path, name: str, before: float, rows: list[list[str]]) -> None:
    body = {
        "machine": {"at": "2026-12-06T01:00:00+00:00", "commit": "abc1234"},
        "load": _common.load_summary([{"before": before, "after": before + 0.1}]),
        "rows": [{"benchmark": name, "metric": m, "cells": cells} for m, *cells in rows],
    }
    (folder / f"{name}.json").write_text(json.dumps(body))


def test_table_splits_quiet_from_loaded(tmp_path: Path) -> None:
    _result(tmp_path, "sync_wan", 0.4, [["files/s", "60", "150 bound", "40 peer", "0.4"]])
    _result(tmp_path, "convert", 3.2, [["slices/s", "50", "60 limit", "17 peer", "2.9x"]])
    (tmp_path / "plan_scale.json").write_text(
        json.dumps(
            {
                "machine": {},
                "rows": [{"benchmark": "plan_scale", "metric": "s", "cells": list("abcd")}],
            }
        )
    )
    text = _common.table(tmp_path)
    quiet, loaded = text.split("Not typical")
    assert "| sync_wan | files/s | 60 | 150 bound | 40 peer | 0.4 | 0.40 / 0.50 |" in quiet
    assert "convert" not in quiet and "| convert | slices/s |" in loaded
    assert "| plan_scale | s | a | b | c | d | not recorded |" in loaded


def test_render_replaces_only_the_generated_block(tmp_path: Path) -> None:
    _result(tmp_path, "sync_wan", 0.4, [["files/s", "1", "2", "3", "4"]])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{_common.BEGIN}\nold\n{_common.END}\n\noutro\n")
    _common.render_readme(tmp_path, readme)
    _common.render_readme(tmp_path, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.count(_common.BEGIN) == 1 and "| sync_wan | files/s | 1 |" in text


def test_load_round_records_before_and_after(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = iter([0.7, 0.9])
    monkeypatch.setattr(_common, "load1", lambda: next(loads))
    monkeypatch.setattr(_common, "ROUNDS", [])
    monkeypatch.setattr(_common, "others_cores", lambda: 0.25)
    with _common.load_round("r1") as record:
        pass
    assert record == {
        "label": "r1",
        "before": 0.7,
        "waited_s": 0.0,
        "loaded": False,
        "after": 0.9,
        "others_cores_before": 0.25,
    }
    assert _common.load_summary(_common.ROUNDS)["quiet"] is True


def test_wait_quiet_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "load1", lambda: 4.0)
    monkeypatch.setattr(_common.time, "sleep", lambda s: None)
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(_common.time, "monotonic", lambda: float(next(clock)))
    load, waited = _common.wait_quiet(limit=20)
    assert load == 4.0 and 20 <= waited <= 30


def test_sync_contenders_match_concurrency() -> None:
    """Raw and tcia-utils run at every mirror contender's concurrency; raw also at the cap."""
    import argparse

    import sync_throughput as st

    args = argparse.Namespace(
        tuned_args="--downloads-per-worker 16", tuned_connections=32, threads_only=False,
        peer_md5=True, raw_threads=[8], archive_args=["--latency", "0.2", "--bandwidth", "2500000",
                                       "--max-connections", "64"],
    )  # fmt: skip
    runs = {c.name: c for c in st.contenders(args, n_series=52)}
    default = st.MIRROR_DEFAULT_CONNECTIONS
    assert {f"raw@{k}" for k in (8, default, 32, 52)} <= set(runs)
    assert {f"tcia-utils@{k}" for k in (st.TCIA_DEFAULT_WORKERS, default, 32)} <= set(runs)
    assert runs["mirror-tuned"].extra == ("--downloads-per-worker", "16")
    # Like with like: tcia-utils then md5sum, at each mirror contender's concurrency only.
    hashed = {name for name in runs if name.startswith("tcia-utils+md5@")}
    assert hashed == {f"tcia-utils+md5@{k}" for k in (default, 32)}
    assert runs[f"tcia-utils+md5@{default}"].kind == "tcia-utils+md5"
    tp = {"series": 52, "zip_bytes": [2_500_000] * 52,
          "contenders": {k: vars(c) for k, c in runs.items()}}  # fmt: skip
    lim = st.limits(tp, args)
    assert lim["bound_s"] == pytest.approx(1.2)
    assert lim["model_s_at_connections"]["8"] == pytest.approx(7 * 1.2)  # ceil(52 / 8) waves
