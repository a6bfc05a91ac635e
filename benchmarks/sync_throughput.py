"""Sync throughput: `mirror sync` against the bound of the same work and against tcia-utils.

The simulated archive runs in its own process (``mirror archive serve``) serving a collection
drawn from the real TCGA radiology mix (``--shape tcga``, the default: instance counts and
bytes per file of randomly drawn catalogue series) or N identical series (``--shape uniform``).
The contenders fetch the same series one after another, ``--rounds`` rounds, fresh
destinations every time, each run inside ``_common.load_round`` (load before and after; a run
starting above 1.5 waits, bounded, or is marked):

* ``raw@K``: the same work with no framework: K threads doing GET getImage (IncludeMD5)
  streamed to disk, then MD5 + write of every entry (stdlib, no fsync). It runs at the
  contenders' concurrencies (mirror's default, ``--tuned-connections``) and at every
  ``--raw-threads`` value; the best of them is raw at its own best concurrency.
* ``tcia-utils@K``: ``nbia.downloadSeries`` at its default (10 workers, no MD5 check) and
  with ``max_workers`` equal to each mirror contender's connections.
* ``tcia-utils+md5@K`` (``--peer-md5``): the same tcia-utils run, then ``md5sum`` of every
  file it wrote, one process per core: the cheapest way its user could add the MD5
  computation mirror does (the comparison with the archive's hashes and the fsync aside),
  like with like on a loopback run whose limit is the CPU (benchmarks.md, point 4);
* ``mirror``: ``mirror sync`` at its defaults (embedded LocalCluster, 2 worker processes x
  ``DEFAULT_HTTP_SLOTS`` (8) = 16 concurrent series); ``mirror-tuned`` with
  ``--tuned-args`` (``--tuned-connections`` says how many series that keeps in flight);
  ``mirror-threads`` with ``--threads-only``. Each is timed as the whole command (interpreter
  start, listing, cluster start, ledger, fsyncs and reports included).

The wide-area case (``--name sync_wan``) is the same script with the archive slowed down:
``--archive-args --latency 0.2 --bandwidth 2500000 --max-connections 64``. Its limit is
computed, not raced (``bounds.py``): the archive's connection cap, per-connection bandwidth and
per-request latency over the bytes of every ``getImage`` response, measured in the warm-up.
Raw also runs at ``min(cap, series)`` threads, the concurrency that bound assumes, and each
contender gets the no-CPU model time at its own concurrency (``bounds.schedule``).

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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bounds
from _common import load_round, md5sum_tree, median, update_row, write_result

from mirror.config import DEFAULT_HTTP_SLOTS

COLLECTION = "TCGA-BENCH"
_EXE = Path(sys.executable).with_name("mirror")
MIRROR = [str(_EXE)] if _EXE.exists() else ["mirror"]
MIRROR_WORKERS = 2  # `mirror sync` default --workers
MIRROR_DEFAULT_CONNECTIONS = MIRROR_WORKERS * DEFAULT_HTTP_SLOTS
TCIA_DEFAULT_WORKERS = 10  # tcia_utils.nbia.downloadSeries(max_workers=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_archive(
    scratch: Path, specs: list[str], level: int, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [*MIRROR, "archive", "serve", "--port", str(port), "--preset", "tiny"]
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


def raw_one(base: str, uid: str, dest: Path) -> tuple[int, int, int]:
    """GET one series' ZIP to disk, then MD5-check and write every entry; (files, bytes, zip)."""
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
    zip_bytes = zpath.stat().st_size
    zpath.unlink()
    return files, nbytes, zip_bytes


def run_raw(base: str, uids: list[str], dest: Path, threads: int) -> tuple[float, list[int]]:
    """Seconds for ``threads`` workers to fetch every series; and each response's bytes."""
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(lambda u: raw_one(base, u, dest), uids))
    return time.perf_counter() - t0, [zip_bytes for _, _, zip_bytes in done]


# --- peers and mirror ----------------------------------------------------------------------

TCIA_SNIPPET = """
import sys, logging
from tcia_utils import nbia
base, dest, uids, workers = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
nbia.setApiUrl = lambda endpoint, api_url="nbia": base
logging.disable(logging.INFO)
kwargs = {"max_workers": int(workers)} if workers else {}
nbia.downloadSeries(uids, input_type="list", path=dest, **kwargs)
"""


def run_tcia_utils(
    base: str, uids: list[str], dest: Path, workers: int | None = None
) -> tuple[float, int]:
    """tcia-utils ``downloadSeries``: at its default (10 workers) or ``workers``."""
    t0 = time.perf_counter()
    argv = [base, str(dest), ",".join(uids), str(workers or "")]
    proc = subprocess.Popen([sys.executable, "-c", TCIA_SNIPPET, *argv])
    peak = watch_rss(proc)
    return time.perf_counter() - t0, peak


def run_tcia_utils_md5(base: str, uids: list[str], dest: Path, workers: int) -> float:
    """tcia-utils at ``workers``, then ``md5sum`` of every file it wrote, a process per core."""
    fetch, _ = run_tcia_utils(base, uids, dest, workers)
    return fetch + md5sum_tree(dest)


def run_mirror(
    base: str, dest: Path, workers: int, extra: list[str] | None = None
) -> tuple[float, dict[int, int], int]:
    """``workers`` > 0: embedded LocalCluster of that many processes; 0: threads only."""
    args = [*MIRROR, "-q", "sync", COLLECTION, "--dest", str(dest), "--archive", base]
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


@dataclass(frozen=True)
class Contender:
    """One thing timed per round: a kind (raw, tcia-utils, mirror) at a concurrency."""

    name: str
    kind: str
    connections: int
    mirror_workers: int = MIRROR_WORKERS
    extra: tuple[str, ...] = field(default=())


def archive_cap(archive_args: list[str]) -> int | None:
    if "--max-connections" in archive_args:
        return int(archive_args[archive_args.index("--max-connections") + 1])
    return None


def wan_settings(archive_args: list[str]) -> tuple[float, float] | None:
    """(latency, bandwidth) when the archive paces responses, else None (loopback)."""
    if "--bandwidth" not in archive_args:
        return None
    latency = 0.0
    if "--latency" in archive_args:
        latency = float(archive_args[archive_args.index("--latency") + 1])
    return latency, float(archive_args[archive_args.index("--bandwidth") + 1])


def contenders(args: argparse.Namespace, n_series: int) -> list[Contender]:
    mirrors = [Contender("mirror", "mirror", MIRROR_DEFAULT_CONNECTIONS)]
    if args.tuned_args:
        extra = tuple(args.tuned_args.split())
        mirrors.append(Contender("mirror-tuned", "mirror", args.tuned_connections, extra=extra))
    if args.threads_only:
        mirrors.append(Contender("mirror-threads", "mirror", DEFAULT_HTTP_SLOTS, 0))
    raw = {m.connections for m in mirrors} | set(args.raw_threads)
    cap = archive_cap(args.archive_args)
    if cap is not None:
        raw.add(min(cap, n_series))
    tcia = {TCIA_DEFAULT_WORKERS} | {m.connections for m in mirrors}
    out = [Contender(f"raw@{k}", "raw", k) for k in sorted(raw)]
    out += [Contender(f"tcia-utils@{k}", "tcia-utils", k) for k in sorted(tcia)]
    if args.peer_md5:
        hashed = sorted({m.connections for m in mirrors})
        out += [Contender(f"tcia-utils+md5@{k}", "tcia-utils+md5", k) for k in hashed]
    return out + mirrors


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
        warm = min(len(uids), archive_cap(args.archive_args) or 8)
        _, zip_sizes = run_raw(base, uids, scratch / "warmup", warm)  # fills the archive cache
        shutil.rmtree(scratch / "warmup")
        runs = contenders(args, len(uids))
        samples: dict[str, list[float]] = {c.name: [] for c in runs}
        for i in range(args.rounds):
            for c in runs:
                dest = scratch / f"{c.name}-{i}"
                with load_round(f"{c.name} round {i + 1}"):
                    samples[c.name].append(run_one(c, base, uids, dest))
                shutil.rmtree(dest, ignore_errors=True)
    finally:
        proc.kill()
    return {"files": files, "bytes": nbytes, "series": len(uids), "zip_bytes": zip_sizes,
            "contenders": {c.name: vars(c) for c in runs}, "seconds": samples,
            "mirror_windows": WINDOWS}  # fmt: skip


def run_one(c: Contender, base: str, uids: list[str], dest: Path) -> float:
    if c.kind == "raw":
        return run_raw(base, uids, dest, c.connections)[0]
    if c.kind == "tcia-utils":
        workers = None if c.connections == TCIA_DEFAULT_WORKERS else c.connections
        return run_tcia_utils(base, uids, dest, workers)[0]
    if c.kind == "tcia-utils+md5":
        return run_tcia_utils_md5(base, uids, dest, c.connections)
    wall = run_mirror(base, dest / "dest", c.mirror_workers, list(c.extra))[0]
    summary = json.loads((dest / "summary.json").read_text())
    WINDOWS.setdefault(c.name, []).append(summary.get("cluster", {}).get("concurrency", {}))
    return wall


# The adaptive window each mirror run ended with (final, peak, back-offs, CPU-bound halvings).
WINDOWS: dict[str, list[dict[str, int]]] = {}


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


def memory(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    spec = f"{COLLECTION}:BIG:CT:{args.big_files}:512"
    proc, base = start_archive(scratch, [spec], 0, [])
    try:
        rows = list_series(base, COLLECTION)
        uids = [r["SeriesInstanceUID"] for r in rows]
        run_raw(base, uids, scratch / "bigwarm", 8)
        shutil.rmtree(scratch / "bigwarm")
        with load_round("memory mirror"):
            wall, peaks, driver = run_mirror(base, scratch / "bigm" / "dest", 2)
        shutil.rmtree(scratch / "bigm")
        with load_round("memory tcia-utils"):
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


def limits(tp: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The computed wide-area bound and the no-CPU model per concurrency (None on loopback)."""
    wan = wan_settings(args.archive_args)
    if wan is None:
        return {}
    latency, bandwidth = wan
    cap = archive_cap(args.archive_args) or tp["series"]
    sizes = tp["zip_bytes"]
    model = {
        str(k): bounds.schedule(sizes, latency, bandwidth, min(k, cap))
        for k in {c["connections"] for c in tp["contenders"].values()}
    }
    return {"latency_s": latency, "bandwidth_Bps": bandwidth, "archive_connections": cap,
            "largest_response_bytes": max(sizes), "response_bytes": sum(sizes),
            "bound_s": bounds.bound(sizes, latency, bandwidth, cap),
            "model_s_at_connections": model}  # fmt: skip


def report(
    tp: dict[str, Any], mem: dict[str, Any] | None, args: argparse.Namespace
) -> dict[str, Any]:
    med = {k: median(v) for k, v in tp["seconds"].items()}
    mb = tp["bytes"] / 1e6
    rates = {k: {"files_s": tp["files"] / s, "MB_s": mb / s} for k, s in med.items()}
    out: dict[str, Any] = {"throughput": tp, "median_seconds": med, "rates": rates}
    out["limits"] = limits(tp, args)
    raws = {k: v for k, v in med.items() if k.startswith("raw@")}
    out["raw_best"] = min(raws, key=raws.__getitem__)
    out["ratios"] = {}
    for name, c in tp["contenders"].items():
        if c["kind"] != "mirror":
            continue
        k = c["connections"]
        r = {"to_raw_same_connections": med[f"raw@{k}"] / med[name],
             "to_raw_best": med[out["raw_best"]] / med[name],
             "to_tcia_utils_default": med[f"tcia-utils@{TCIA_DEFAULT_WORKERS}"] / med[name],
             "to_tcia_utils_same_connections": med[f"tcia-utils@{k}"] / med[name]}  # fmt: skip
        if f"tcia-utils+md5@{k}" in med:
            r["to_tcia_utils_md5_same_connections"] = med[f"tcia-utils+md5@{k}"] / med[name]
        if out["limits"]:
            r["to_bound"] = out["limits"]["bound_s"] / med[name]
            r["to_model_same_connections"] = (
                out["limits"]["model_s_at_connections"][str(k)] / med[name]
            )
        out["ratios"][name] = r
    if mem:
        out["memory"] = mem
    return out


def table_rows(result: dict[str, Any], args: argparse.Namespace) -> None:
    tp, r, ratios, lim = result["throughput"], result["rates"], result["ratios"], result["limits"]
    files = tp["files"]
    best = result["raw_best"]
    for name, ratio in ratios.items():
        c = tp["contenders"][name]
        k = c["connections"]
        label = {"mirror": "defaults", "mirror-tuned": args.tuned_args,
                 "mirror-threads": "--threads-only"}[name]  # fmt: skip
        limit = []
        if lim:
            cap = lim["archive_connections"]
            limit.append(f"bound {files / lim['bound_s']:.0f} (archive: {cap} connections x "
                         f"{lim['bandwidth_Bps'] / 1e6:g} MB/s, {lim['latency_s']:g} s/request; "
                         f"largest response {lim['largest_response_bytes'] / 1e6:.1f} MB); "
                         f"model at {k} connections "
                         f"{files / lim['model_s_at_connections'][str(k)]:.0f}")  # fmt: skip
        limit.append(
            f"raw {r[f'raw@{k}']['files_s']:.0f} at {k} threads, "
            f"{r[best]['files_s']:.0f} at its best ({best.removeprefix('raw@')})"
        )
        peer = (f"tcia-utils {r[f'tcia-utils@{TCIA_DEFAULT_WORKERS}']['files_s']:.0f} default "
                f"({TCIA_DEFAULT_WORKERS} workers), {r[f'tcia-utils@{k}']['files_s']:.0f} at {k} "
                "workers; no MD5 check")  # fmt: skip
        if f"tcia-utils+md5@{k}" in r:
            peer += (f"; then md5sum of its files (a process per core) "
                     f"{r[f'tcia-utils+md5@{k}']['files_s']:.0f} at {k}")  # fmt: skip
        cells = []
        if lim:
            cells.append(
                f"{ratio['to_bound']:.2f} of bound, "
                f"{ratio['to_model_same_connections']:.2f} of model"
            )
        cells.append(
            f"{ratio['to_raw_same_connections']:.2f} of raw at {k}, "
            f"{ratio['to_raw_best']:.2f} of best raw"
        )
        cells.append(
            f"{ratio['to_tcia_utils_default']:.2f}x tcia-utils default, "
            f"{ratio['to_tcia_utils_same_connections']:.2f}x at {k}"
        )
        if "to_tcia_utils_md5_same_connections" in ratio:
            cells.append(
                f"{ratio['to_tcia_utils_md5_same_connections']:.2f}x tcia-utils+md5sum at {k}"
            )
        windows = [w for w in tp.get("mirror_windows", {}).get(name, []) if w]
        seen = ""
        if windows:
            seen = (f"; window peak {max(w['peak'] for w in windows)}, final "
                    f"{'/'.join(str(w['final']) for w in windows)}")  # fmt: skip
        update_row(
            args.name,
            f"files/s (MB/s), mirror {label} ({k} series in flight at most{seen})",
            [f"{r[name]['files_s']:.0f} ({r[name]['MB_s']:.0f})", "; ".join(limit), peer,
             "; ".join(cells)],
        )  # fmt: skip
    mem = result.get("memory")
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
    ap.add_argument(
        "--raw-threads",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[4, 8, 16, 32],
        help="raw also at these (comma-separated)",
    )
    ap.add_argument("--tuned-args", default="", help="mirror-tuned: extra `mirror sync` args")
    ap.add_argument(
        "--tuned-connections",
        type=int,
        default=32,
        help="series mirror-tuned keeps in flight (raw and tcia-utils match it)",
    )
    ap.add_argument("--threads-only", action="store_true", help="also time --threads-only")
    ap.add_argument(
        "--peer-md5",
        action="store_true",
        help="also time tcia-utils followed by md5sum of its files (like with like)",
    )
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
    result = report(tp, mem, args)
    result["settings"] = vars(args)
    path = write_result(args.name, result)
    table_rows(result, args)
    keys = ("median_seconds", "limits", "ratios")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
