"""Run every benchmark, one after another in one process tree, then regenerate the README table.

    python benchmarks/run_all.py            # full settings (tens of minutes; results/*.json)
    python benchmarks/run_all.py --quick    # small settings to validate the harness
    python benchmarks/run_all.py --only sync_wan convert

Each benchmark runs as a child process of this one, from this checkout (``PYTHONPATH`` is set
to it, the venv's ``bin`` goes first on ``PATH``). Each records the 1-minute load average
before and after each of its rounds and waits up to ``--max-wait`` seconds for a quiet machine
(load <= 1.5) before a round; rounds that start loaded are marked, and their rows go to the
"not typical" table. Full runs write ``benchmarks/results/*.json`` and regenerate the table in
``benchmarks/README.md``; ``--quick`` writes to ``benchmarks/results-quick/`` (not committed)
and prints its table, so a validation run never replaces a real figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parent
WAN = ["--archive-args", "--latency", "0.2", "--bandwidth", "2500000", "--max-connections", "64"]

# name: (script, full arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "sync_wan": (
        "sync_throughput.py",
        ["--name", "sync_wan", "--total-mb", "800", "--max-files", "60", "--raw-threads", "32",
         "--tuned-args", "--downloads-per-worker 16 --threads 16", "--tuned-connections", "32",
         "--skip-memory", *WAN],
        ["--name", "sync_wan", "--total-mb", "60", "--max-files", "20", "--rounds", "1",
         "--raw-threads", "", "--tuned-args", "--downloads-per-worker 16 --threads 16",
         "--tuned-connections", "32", "--skip-memory", *WAN],
    ),
    "sync_throughput": (
        "sync_throughput.py",
        ["--total-mb", "2000", "--max-files", "300", "--raw-threads", "4,8,16,32",
         "--tuned-args", "--downloads-per-worker 4", "--tuned-connections", "8", "--peer-md5"],
        ["--total-mb", "100", "--max-files", "30", "--rounds", "1", "--raw-threads", "8",
         "--tuned-args", "--downloads-per-worker 4", "--tuned-connections", "8",
         "--big-files", "200", "--peer-md5"],
    ),
    "convert": ("convert.py", [], ["--slices", "64", "--size", "256", "--reps", "1",
                                   "--workdir", "/tmp/mirror-bench-convert-quick"]),
    "archive_stream_memory": ("archive_stream_memory.py", ["--peer"],
                              ["--slices", "200", "--runs", "1", "--peer"]),
    "index_build": ("index_build.py", [], ["--series", "6", "--slices", "10", "--runs", "1"]),
    "index_query": ("index_query.py", [], ["--runs", "1", "--no-idc"]),
    "plan_scale": ("plan_scale.py", [], ["--limit", "20000", "--repeats", "1", "--sample", "500"]),
    "idc_fetch": ("idc_fetch.py", [], ["--series-per-collection", "2", "--max-instances", "20",
                                       "--rounds", "1",
                                       "--contenders", "mirror-sync,mirror,s5cmd"]),
}  # fmt: skip


def child_env(results: Path, max_wait: float, quick: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).strip(
        os.pathsep
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["BENCH_RESULTS"] = str(results)
    env["BENCH_MAX_WAIT"] = str(max_wait)
    if quick:
        env["BENCH_NO_README"] = "1"
    return env


def run(name: str, quick: bool, env: dict[str, str]) -> dict[str, object]:
    script, full, small = BENCHMARKS[name]
    cmd = [sys.executable, str(HERE / script), *(small if quick else full)]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    before, start = _common.load1(), time.perf_counter()
    code = subprocess.run(cmd, env=env, check=False).returncode
    return {"benchmark": name, "exit": code, "seconds": round(time.perf_counter() - start, 1),
            "load_before": before, "load_after": _common.load1()}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small settings; results-quick/")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    ap.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[])
    ap.add_argument("--max-wait", type=float, default=None,
                    help="seconds a round waits for load <= 1.5 (120; quick: 0)")  # fmt: skip
    ap.add_argument("--table-only", action="store_true", help="only regenerate the README table")
    args = ap.parse_args()
    results = HERE / ("results-quick" if args.quick else "results")
    if not args.table_only:
        wait = args.max_wait if args.max_wait is not None else (0 if args.quick else 120)
        env = child_env(results, wait, args.quick)
        log = [run(name, args.quick, env) for name in args.only if name not in args.skip]
        results.mkdir(parents=True, exist_ok=True)
        (results / "_run_all.json").write_text(
            json.dumps({"machine": _common.machine(), "quick": args.quick, "runs": log}, indent=2)
            + "\n"
        )
    if args.quick:
        block = _common.table(results)
        (results / "README.md").write_text(block + "\n")
        print(block)
    else:
        _common.render_readme(results)
        print(f"regenerated the table in {_common.TABLE}")
    failed = [r for r in log if r["exit"]] if not args.table_only else []
    for r in failed:
        print(f"{r['benchmark']} exited {r['exit']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
