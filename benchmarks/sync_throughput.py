"""Sync throughput: `mirror sync` against the raw limit and against tcia-utils, in one run.

The simulated archive runs in its own process (``mirror archive serve``) serving a
collection drawn from the real TCGA radiology mix (``--shape tcga``, the default: instance
counts and bytes per file of randomly drawn catalogue series, ~1 GB) or N identical series
(``--shape uniform``). The contenders fetch the same series, one after another, three
rounds, fresh destinations every time:

* ``raw``: the limit of the same work with no framework: ``--raw-threads`` threads doing
  GET getImage(+md5hashes.csv) streamed to disk, then MD5 + write of every entry (stdlib,
  no fsync).
* ``tcia-utils``: ``nbia.downloadSeries`` at its defaults (10 threads, no MD5 check).
* ``mirror``: ``mirror sync`` at its defaults (embedded LocalCluster, 2 worker processes,
  8 concurrent series); ``mirror-tuned`` with ``--tuned-args``; ``mirror-threads`` with
  ``--threads-only``. Each is timed as the whole command (interpreter start, listing,
  cluster start, ledger, fsyncs and reports included).

The wide-area case is the same script with the archive slowed down, e.g.
``--archive-args --latency 0.2 --bandwidth 2500000 --max-connections 64``.

Then the memory probe: peak RSS of every mirror worker process while syncing one ~2 GB
series, against tcia-utils (which holds the whole ZIP in memory).

Usage: ``python benchmarks/sync_throughput.py [--shape tcga] [--total-mb 1000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, update_row, write_result

COLLECTION = "TCGA-BENCH"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_archive(
    scratch: Path, specs: list[str], level: int, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = ["mirror", "archive", "serve", "--port", str(port), "--preset", "tiny"]
    args += ["--compresslevel", str(level), "--data", str(scratch / "simcache")]
    for spec in specs:
        args += ["--series", spec]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    base = proc.stdout.readline().decode().strip()
    if not base.startswith("http"):
        proc.kill()
        raise SystemExit(f"archive did not start: {base!r}")
    return proc, base


def list_series(base: str, collection: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}getSeries?Collection={collection}", timeout=600) as r:
        body = r.read()
    return list(json.loads(body)) if body else []


# --- raw limit ---------------------------------------------------------------------------


def raw_one(base: str, uid: str, dest: Path) -> tuple[int, int]:
    url = f"{base}getImage?SeriesInstanceUID={uid}&NewFileNames=Yes&IncludeMD5=Yes"
    target = dest / uid
    target.mkdir(parents=True)
    zpath = dest / f"{uid}.zip"
    with urllib.request.urlopen(url, timeout=600) as r, open(zpath, "wb") as out:
        shutil.copyfileobj(r, out, 1 << 20)
    files = nbytes = 0
    with zipfile.ZipFile(zpath) as z:
        rows = csv.reader(io.TextIOWrapper(z.open("md5hashes.csv")))
        sums = {row[0]: row[1].zfill(32) for row in rows}
        for info in z.infolist():
            if not info.filename.endswith(".dcm"):
                continue
            h = hashlib.md5()
            with z.open(info) as src, open(target / info.filename, "wb") as out:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
            assert h.hexdigest() == sums[info.filename], info.filename
            files += 1
            nbytes += info.file_size
    zpath.unlink()
    return files, nbytes


def run_raw(base: str, uids: list[str], dest: Path, threads: int) -> float:
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda u: raw_one(base, u, dest), uids))
    return time.perf_counter() - t0


# --- peers and mirror ----------------------------------------------------------------------

TCIA_SNIPPET = """
import sys, logging
from tcia_utils import nbia
base, dest, uids = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
nbia.setApiUrl = lambda endpoint, api_url="nbia": base
logging.disable(logging.INFO)
nbia.downloadSeries(uids, input_type="list", path=dest)
"""


def run_tcia_utils(base: str, uids: list[str], dest: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", TCIA_SNIPPET, base, str(dest), ",".join(uids)])
    peak = watch_rss(proc)
    return time.perf_counter() - t0, peak


def run_mirror(
    base: str, dest: Path, workers: int, extra: list[str] | None = None
) -> tuple[float, dict[int, int], int]:
    """``workers`` > 0: embedded LocalCluster of that many processes; 0: threads only."""
    args = ["mirror", "-q", "sync", COLLECTION, "--dest", str(dest), "--archive", base]
    args += ["--workers", str(workers), "--summary-json", str(dest.parent / "summary.json")]
    args += extra or []
    t0 = time.perf_counter()
    proc = subprocess.Popen(args)
    peaks = watch_tree_rss(proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"mirror sync exited {proc.returncode}")
    return wall, peaks, proc.pid


def watch_rss(proc: subprocess.Popen[bytes]) -> int:
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return peak


def watch_tree_rss(proc: subprocess.Popen[bytes]) -> dict[int, int]:
    """Peak RSS of every process in the tree (driver, nanny, workers), by pid."""
    peaks: dict[int, int] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [root, *root.children(recursive=True)]:
                peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return peaks


def worker_peaks(peaks: dict[int, int], driver: int) -> list[int]:
    return sorted((v for k, v in peaks.items() if k != driver), reverse=True)


# --- driver --------------------------------------------------------------------------------


CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_catalog.parquet"


def tcga_specs(total_mb: int, max_files: int, seed: int) -> list[str]:
    """Series drawn from the real TCGA radiology mix (IDC catalogue, doi 10.1148/rg.230180).

    Each keeps its instance count (capped) and a matrix giving its real bytes per file
    (512^2 CT ~ 0.5 MB, 256^2 MR, 128^2 PET), until the collection holds ``total_mb``.
    """
    import random

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(CATALOG, columns=["Modality", "instanceCount", "series_size_MB"])
    table = table.filter(
        pc.is_in(table["Modality"], value_set=pc.cast(["CT", "MR", "PT"], "string"))
    )
    rows = table.to_pylist()
    random.Random(seed).shuffle(rows)
    specs: list[str] = []
    total = 0.0
    for row in rows:
        count = min(int(row["instanceCount"] or 1), max_files)
        per_file = float(row["series_size_MB"] or 0) / max(int(row["instanceCount"] or 1), 1)
        side = next((n for n in (512, 256, 128) if per_file >= 0.7 * n * n * 2 / 1e6), 64)
        specs.append(f"{COLLECTION}:P{len(specs):04d}:{row['Modality']}:{count}:{side}")
        total += count * side * side * 2 / 1e6
        if total >= total_mb:
            break
    return specs


def contenders(args: argparse.Namespace) -> list[str]:
    names = ["raw", "tcia-utils", "mirror"]
    if args.tuned_args:
        names.append("mirror-tuned")
    if args.threads_only:
        names.append("mirror-threads")
    return names


def throughput(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    if args.shape == "tcga":
        specs = tcga_specs(args.total_mb, args.max_files, args.seed)
    else:
        specs = [f"{COLLECTION}:P{i:03d}:CT:{args.files}:512" for i in range(args.series)]
    proc, base = start_archive(scratch, specs, args.level, args.archive_args)
    try:
        rows = list_series(base, COLLECTION)
        uids = [r["SeriesInstanceUID"] for r in rows]
        files = sum(int(r["ImageCount"]) for r in rows)
        nbytes = sum(int(r["FileSize"]) for r in rows)
        run_raw(base, uids, scratch / "warmup", 8)  # fills the archive's on-disk cache
        shutil.rmtree(scratch / "warmup")
        samples: dict[str, list[float]] = {name: [] for name in contenders(args)}
        for i in range(args.rounds):
            for name, values in samples.items():
                dest = scratch / f"{name}{i}"
                values.append(run_one(name, args, base, uids, dest))
                shutil.rmtree(dest, ignore_errors=True)
    finally:
        proc.kill()
    return {"files": files, "bytes": nbytes, "series": len(uids), "seconds": samples}


def run_one(name: str, args: argparse.Namespace, base: str, uids: list[str], dest: Path) -> float:
    if name == "raw":
        return run_raw(base, uids, dest, args.raw_threads)
    if name == "tcia-utils":
        return run_tcia_utils(base, uids, dest)[0]
    workers, extra = {
        "mirror": (2, []),
        "mirror-tuned": (2, args.tuned_args.split()),
        "mirror-threads": (0, []),
    }[name]
    return run_mirror(base, dest / "dest", workers, extra)[0]


def memory(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    spec = f"{COLLECTION}:BIG:CT:{args.big_files}:512"
    proc, base = start_archive(scratch, [spec], 0, [])
    try:
        rows = list_series(base, COLLECTION)
        uids = [r["SeriesInstanceUID"] for r in rows]
        run_raw(base, uids, scratch / "bigwarm", 8)
        shutil.rmtree(scratch / "bigwarm")
        wall, peaks, driver = run_mirror(base, scratch / "bigm" / "dest", 2)
        shutil.rmtree(scratch / "bigm")
        tcia_wall, tcia_peak = run_tcia_utils(base, uids, scratch / "bigt")
    finally:
        proc.kill()
    return {
        "series_bytes": sum(int(r["FileSize"]) for r in rows),
        "mirror_seconds": wall,
        "mirror_process_peaks": sorted(peaks.values(), reverse=True),
        "mirror_worker_peak_max": max(worker_peaks(peaks, driver) or [0]),
        "tcia_utils_seconds": tcia_wall,
        "tcia_utils_peak": tcia_peak,
    }


def report(tp: dict[str, Any], mem: dict[str, Any] | None) -> dict[str, Any]:
    med = {k: median(v) for k, v in tp["seconds"].items()}
    mb = tp["bytes"] / 1e6
    rates = {k: {"files_s": tp["files"] / s, "MB_s": mb / s} for k, s in med.items()}
    out: dict[str, Any] = {"throughput": tp, "median_seconds": med, "rates": rates}
    out["ratios"] = {
        name: {"to_raw": med["raw"] / med[name], "to_tcia_utils": med["tcia-utils"] / med[name]}
        for name in med
        if name.startswith("mirror")
    }
    if mem:
        out["memory"] = mem
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shape", choices=["uniform", "tcga"], default="tcga")
    ap.add_argument("--total-mb", type=int, default=1000, help="tcga shape: collection size")
    ap.add_argument("--max-files", type=int, default=300, help="tcga shape: cap per series")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", type=int, default=16, help="uniform shape: series count")
    ap.add_argument("--files", type=int, default=58, help="uniform shape: files per series")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--level", type=int, default=0, help="archive deflate level (0 = stored)")
    ap.add_argument("--raw-threads", type=int, default=8)
    ap.add_argument("--tuned-args", default="", help="mirror-tuned: extra `mirror sync` args")
    ap.add_argument("--threads-only", action="store_true", help="also time --threads-only")
    ap.add_argument("--big-files", type=int, default=4000, help="slices in the ~2 GB series")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--name", default="sync_throughput")
    ap.add_argument("--archive-args", nargs=argparse.REMAINDER, default=[])
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        tp = throughput(args, scratch)
        mem = None if args.skip_memory else memory(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = report(tp, mem)
    result["settings"] = vars(args)
    result["load_average_at_end"] = list(os.getloadavg())
    path = write_result(args.name, result)
    r = result["rates"]
    for name, ratio in result["ratios"].items():
        label = {
            "mirror": "defaults",
            "mirror-tuned": args.tuned_args,
            "mirror-threads": "--threads-only",
        }[name]
        update_row(
            args.name,
            f"files/s (MB/s), mirror {label}",
            [
                f"{r[name]['files_s']:.0f} ({r[name]['MB_s']:.0f})",
                f"{r['raw']['files_s']:.0f} ({r['raw']['MB_s']:.0f}) raw GET+MD5+write, "
                f"{args.raw_threads} threads",
                f"{r['tcia-utils']['files_s']:.0f} ({r['tcia-utils']['MB_s']:.0f}) tcia-utils",
                f"{ratio['to_raw']:.2f} of raw; {ratio['to_tcia_utils']:.2f}x tcia-utils",
            ],
        )
    if mem:
        update_row(
            "sync_memory_2GB_series",
            "peak RSS per worker",
            [
                f"{mem['mirror_worker_peak_max'] / 2**20:.0f} MiB",
                "flat (streamed)",
                f"{mem['tcia_utils_peak'] / 2**20:.0f} MiB tcia-utils",
                f"{mem['tcia_utils_peak'] / max(mem['mirror_worker_peak_max'], 1):.1f}x less",
            ],
        )
    keys = ("median_seconds", "ratios")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
