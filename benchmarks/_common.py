"""Shared helpers for benchmark scripts: machine facts, medians, result files, README rows."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TABLE = HERE / "README.md"


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "mem_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def write_result(name: str, payload: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def update_row(benchmark: str, metric: str, cells: Sequence[str]) -> None:
    """Insert or replace the table row keyed by (benchmark, metric) in benchmarks/README.md."""
    date = datetime.now(UTC).date().isoformat()
    row = "| " + " | ".join([benchmark, metric, *cells, date]) + " |"
    lines = TABLE.read_text().splitlines()
    key = f"| {benchmark} | {metric} |"
    for i, line in enumerate(lines):
        if line.startswith(key):
            lines[i] = row
            break
    else:
        lines.append(row)
    TABLE.write_text("\n".join(lines) + "\n")
