"""Full-archive planning at scale: the planner and the SQLite ledger over every public series.

Metadata only (nothing is downloaded). The real series catalog of NCI Imaging Data Commons
(``shared/data/all_series_catalog.parquet``: 1.04M series, 58.8M files, every public
collection IDC hosts, a superset of TCIA's public radiology) becomes ``SeriesRecord``s, as a
``--full`` listing would, and goes through the code ``mirror sync`` runs on the driver:

* ``first``: empty ledger, every series is new: the listing table joined against the
  ledger's columns (``Ledger.held_columns`` + ``plan_columnar``, as ``mirror sync`` plans
  any full listing), then ``mark_in_progress`` for everything (one transaction, as run.py
  does before submitting), then ``record_committed`` for a sample (one fsynced
  transaction per series, as the driver does per finished series); the rest of the ledger
  is then filled in bulk so the next phases see a fully populated ledger.
* ``unchanged``: the weekly ``--full`` reconcile when nothing changed: the full listing as
  an Arrow table (what a tabular source such as IDC's index gives, or a record source's
  collections made columns one by one), one columnar join against the ledger. Its time is
  the listing table plus the plan; its peak RSS is the whole process's.
* ``changed_1pct``: the same with 1 % of series changed upstream (ImageCount + 1).
* ``nightly_1pct``: a nightly incremental: ``getUpdatedSeries`` lists only the changed 1 %,
  planned against the full ledger.

Each phase runs in a fresh process so its peak RSS is its own; plan timings are the median
of ``--repeats`` runs inside the phase. The machine is a shared 2-core VM: read the numbers
as orders of magnitude.

Usage: ``python benchmarks/plan_scale.py [--limit N] [--repeats 3] [--sample 20000]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_round, median, update_row, write_result

CATALOG = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "all_series_catalog.parquet"
)
T = TypeVar("T")
RUN_DATE = date(2026, 11, 1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load_records(
    catalog: Path, limit: int | None, changed_every: int = 0, only_changed: bool = False
) -> list[Any]:
    """Catalog rows -> SeriesRecord, as the archive adapter builds them from a listing.

    ``only_changed``: keep just the bumped rows (a nightly ``getUpdatedSeries`` answer), so
    the phase never holds the full listing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mirror.archive.port import SeriesRecord

    pa.set_memory_pool(pa.system_memory_pool())

    # Small batches through the system allocator: the driver's RSS should show the records,
    # not Arrow's retained buffers.
    records: list[Any] = []
    i = -1
    for batch in pq.ParquetFile(catalog, memory_map=True).iter_batches(batch_size=50_000):
        cols = batch.to_pydict()
        for j in range(batch.num_rows):
            i += 1
            if limit and i >= limit:
                return records
            bump = bool(changed_every) and i % changed_every == 0
            if bump or not only_changed:
                records.append(to_record(SeriesRecord, cols, j, bump))
    return records


def to_record(cls: Any, cols: dict[str, list[Any]], j: int, bump: bool) -> Any:
    # bump: a series that gained an instance upstream (fingerprint change)
    return cls(
        series_uid=cols["SeriesInstanceUID"][j],
        study_uid=cols["StudyInstanceUID"][j],
        patient_id=cols["PatientID"][j],
        collection=cols["collection_id"][j],
        modality=cols["Modality"][j] or "",
        image_count=int(cols["instanceCount"][j] or 0) + int(bump),
        file_size=int((cols["series_size_MB"][j] or 0) * 1_000_000),
        date_released=RUN_DATE,
        max_submission=RUN_DATE,
        series_description=cols["SeriesDescription"][j] or "",
        body_part=cols["BodyPartExamined"][j] or "",
        manufacturer=cols["Manufacturer"][j] or "",
        study_date=cols["StudyDate"][j],
    )


def load_table(catalog: Path, limit: int | None, changed_every: int = 0) -> Any:
    """The catalog as the listing table a full listing gives (``Listing.table``): the
    columns of ``listing_table.series_schema``, collections in sorted order, built with
    Arrow compute from the Parquet file (no object per row)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mirror.archive.listing_table import conform
    from mirror.sync.columnar import prefer_system_allocator

    prefer_system_allocator()  # as the sync driver does before a full listing

    def read(name: str) -> Any:  # one catalog column, in listing order
        column = pq.read_table(catalog, columns=[name]).column(0)
        return column.slice(0, limit).take(order) if limit else column.take(order)

    # Column by column, so the peak is the listing plus one column, not two listings.
    collection = pq.read_table(catalog, columns=["collection_id"]).column(0)
    n = min(limit or len(collection), len(collection))
    order = pc.sort_indices(collection.slice(0, n))  # stable: catalog order within each
    del collection
    # the rows load_records bumps: every changed_every-th of the catalog
    bump = np.asarray(order) % changed_every == 0 if changed_every else np.zeros(n, dtype=bool)
    day = (RUN_DATE - date(1970, 1, 1)).days
    dates = pa.array(np.full(n, day, dtype=np.int32)).cast(pa.date32())
    size = pc.multiply(pc.fill_null(read("series_size_MB"), 0.0), 1_000_000)
    count = pc.fill_null(read("instanceCount").cast(pa.int64()), 0)
    columns = {
        "image_count": pc.add(count, pa.array(bump.astype(np.int64))),
        "file_size": pc.cast(pc.trunc(size), pa.int64()),
        "date_released": dates,
        "max_submission": dates,
    }
    for name, source in (
        ("series_uid", "SeriesInstanceUID"),
        ("study_uid", "StudyInstanceUID"),
        ("patient_id", "PatientID"),
        ("collection", "collection_id"),
        ("modality", "Modality"),
        ("series_description", "SeriesDescription"),
        ("body_part", "BodyPartExamined"),
        ("manufacturer", "Manufacturer"),
        ("study_date", "StudyDate"),
    ):
        columns[name] = read(source)
        if pa.types.is_string(columns[name].type):
            columns[name] = pc.fill_null(columns[name], "")
    table = conform(pa.table(columns))
    del columns
    pa.default_memory_pool().release_unused()
    return table


def rss_mb() -> float:
    import psutil

    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def plan_repeated(ledger: Any, remote: list[Any], scope: Any, repeats: int) -> Any:
    """What ``mirror sync`` does after listing: query the ledger's slice, plan from it."""
    from mirror.sync.plan import MaxDelete, plan_slice

    times, slice_times = [], []
    result = None
    for _ in range(repeats):
        result = None  # the previous repeat's plan must not count in this one's peak RSS
        gc.collect()
        start = time.perf_counter()
        held, seconds = timed(lambda: ledger.held_slice(remote, scope))
        result = plan_slice(remote, held, scope=scope, max_delete=MaxDelete(1, True))
        times.append(time.perf_counter() - start)
        slice_times.append(seconds)
        del held
    return result, times, slice_times


def columnar_repeated(ledger: Any, table: Any, scope: Any, repeats: int) -> Any:
    """What ``mirror sync`` does after a full listing: read the ledger's columns, join."""
    from mirror.sync.columnar import plan_columnar
    from mirror.sync.plan import MaxDelete

    times, held_times = [], []
    result = None
    for _ in range(repeats):
        result = None  # the previous repeat's plan must not count in this one's peak RSS
        gc.collect()
        start = time.perf_counter()
        held, seconds = timed(lambda: ledger.held_columns([], scope))
        result = plan_columnar(
            table, held, ledger.entries_for, scope=scope, max_delete=MaxDelete(1, True)
        )
        times.append(time.perf_counter() - start)
        held_times.append(seconds)
        del held
    return result, times, held_times


def table_scope(table: Any) -> Any:
    import pyarrow.compute as pc

    from mirror.sync.plan import PlanScope

    return PlanScope(listed=frozenset(pc.unique(table.column("collection")).to_pylist()))


def ledger_size_mb(path: Path) -> float:
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def fake_sidecar(record: Any, path: str) -> Any:
    from mirror.layout import InstanceEntry, SeriesSidecar

    md5 = f"{abs(hash(record.series_uid)):032x}"[-32:]
    instances = (InstanceEntry(name="1-0001.dcm", md5=md5, size=record.file_size),)
    return SeriesSidecar(
        series_uid=record.series_uid,
        study_uid=record.study_uid,
        patient_id=record.patient_id,
        collection=record.collection,
        modality=record.modality,
        path=path,
        instances=instances,
        fingerprint=record.fingerprint,
        series_version=1,
        run_id="bench-first",
        synced_at="2026-11-01T00:00:00+00:00",
        tool_version="bench",
    )


def bulk_commit_rest(ledger_path: Path, records: list[Any]) -> None:
    """Fill the ledger as if every series had been committed (setup, not a measured path)."""
    import sqlite3

    conn = sqlite3.connect(ledger_path)
    rows = [(*r.fingerprint, r.image_count, r.file_size, r.series_uid) for r in records]
    with conn:
        conn.executemany(
            "UPDATE series SET state='present', fp_image_count=?, fp_file_size=?,"
            " fp_max_submission=?, fp_date_released=?, n_instances=?, bytes=?,"
            " content_hash='0', series_version=1, attempts=0 WHERE series_uid=?",
            rows,
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def phase_first(args: argparse.Namespace, ledger_path: Path) -> dict[str, Any]:
    from mirror.sync.ledger import Ledger

    table, load_s = timed(lambda: load_table(args.catalog, args.limit))
    out: dict[str, Any] = {
        "series": table.num_rows,
        "load_listing_s": load_s,
        "rss_listing_mb": rss_mb(),
    }
    with Ledger.open(ledger_path) as ledger:
        result, times, _ = columnar_repeated(ledger, table, table_scope(table), args.repeats)
        the_plan = result.plan
        out["rss_after_plan_mb"] = rss_mb()
        out |= {"plan_s": median(times), "plan_samples_s": times, "counts": the_plan.counts}
        items = [(i.record, i.path) for i in the_plan.to_fetch]
        records = [r for r, _ in items]
        del the_plan, result, table
        _, out["mark_in_progress_s"] = timed(lambda: ledger.mark_in_progress(items, "bench-first"))
        sample = items[: args.sample]
        _, commit_s = timed(lambda: commit_each(ledger, sample))
        out |= {
            "commit_sample": len(sample),
            "commit_per_series_ms": 1000 * commit_s / max(1, len(sample)),
        }
    bulk_commit_rest(ledger_path, records)
    with Ledger.open(ledger_path) as ledger:
        ledger.compact()  # what the run's finish_run does last
    out["ledger_mb"] = ledger_size_mb(ledger_path)
    return out


def commit_each(ledger: Any, items: list[tuple[Any, str]]) -> None:
    for record, path in items:
        ledger.record_committed(record, fake_sidecar(record, path), "bench-first", changed=False)


def phase_replan(
    args: argparse.Namespace, ledger_path: Path, changed_every: int, nightly: bool
) -> dict[str, Any]:
    """``--full`` (every collection listed) or a nightly (only what changed is listed, no
    collection in full: ``changed_every=0`` is the no-op night with nothing new)."""
    from mirror.sync.ledger import Ledger
    from mirror.sync.plan import PlanScope

    out: dict[str, Any] = {}
    if nightly:
        records, out["load_listing_s"] = timed(
            lambda: (
                load_records(args.catalog, args.limit, changed_every, only_changed=True)
                if changed_every
                else []
            )
        )
        scope = PlanScope()
    else:  # the full listing as a table; one columnar join (run.py's planner for it)
        table, out["load_listing_s"] = timed(
            lambda: load_table(args.catalog, args.limit, changed_every)
        )
        out |= {"series_listed": table.num_rows, "rss_listing_mb": rss_mb()}
        ledger, out["ledger_open_s"] = timed(lambda: Ledger.open(ledger_path))
        with ledger:
            result, times, held_times = columnar_repeated(
                ledger, table, table_scope(table), args.repeats
            )
            out["rss_after_plan_mb"] = rss_mb()
        return out | {
            "plan_s": median(times),
            "plan_samples_s": times,
            "held_columns_s": median(held_times),
            "full_s": out["load_listing_s"] + median(times),
            "counts": result.plan.counts,
        }
    out |= {"series_listed": len(records), "rss_listing_mb": rss_mb()}
    ledger, out["ledger_open_s"] = timed(lambda: Ledger.open(ledger_path))
    with ledger:
        the_plan, times, slice_times = plan_repeated(ledger, records, scope, args.repeats)
        out["rss_after_plan_mb"] = rss_mb()
    out |= {
        "plan_s": median(times),
        "plan_samples_s": times,
        "held_slice_s": median(slice_times),
        "counts": the_plan.counts,
    }
    return out


def phase_entries(args: argparse.Namespace, ledger_path: Path) -> dict[str, Any]:
    """The old way, for comparison: every row as a LedgerEntry (``ops verify`` still does)."""
    from mirror.sync.ledger import Ledger

    with Ledger.open(ledger_path) as ledger:
        held, seconds = timed(ledger.entries)
        return {"ledger_rows": len(held), "ledger_load_s": seconds, "rss_loaded_mb": rss_mb()}


PHASES = ("first", "unchanged", "changed_1pct", "nightly_noop", "nightly_1pct", "entries")

# The wide-area model (shared/benchmarks.md): every series is one getImage request that
# pays the round trip, then streams at the per-connection cap; the archive admits at most
# C connections. Wire bytes are FileSize x ratio: TCIA's ZIPs are DEFLATE-compressed and the
# Data Retriever budgets ~35 % of FileSize; 1.0 is the no-compression worst case.
SUBSETS = {
    "all_public (IDC catalog)": "true",
    "radiology images (no SM/SEG/SR/ANN/RT*)": (
        "Modality NOT IN ('SM','SEG','SR','ANN','RTSTRUCT','RTPLAN','RTDOSE')"
    ),
}
MODEL = {
    "per_connection_MBps": 5.0,  # 40 Mbit/s
    "latency_s": 0.3,
    "connections": (32, 64),
    "wire_ratio": (0.35, 1.0),
    "s3_put_s": 0.03,  # per object, sequential inside a task (commit_objects)
}


def measure_verify_rate(total_mb: int = 256, file_mb: float = 0.5) -> dict[str, float]:
    """One core's rate for the per-file work after the socket: inflate + CRC (zipfile),
    MD5, write to local disk. Synthetic CT-like slices (smooth 12-bit + noise, int16)."""
    import hashlib
    import io
    import os
    import zipfile

    import numpy as np

    rng = np.random.default_rng(0)
    side = int((file_mb * 2**20 / 2) ** 0.5)
    yy, xx = np.mgrid[0:side, 0:side]
    base = (1000 + 800 * np.sin(xx / 40) * np.cos(yy / 55)).astype(np.int16)
    n_files = int(total_mb / file_mb)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:  # level 6, as ZipOutputStream
        for i in range(n_files):
            noise = rng.integers(-20, 20, size=base.shape, dtype=np.int16)
            zf.writestr(f"{i:08d}.dcm", (base + noise).tobytes())
    wire = buf.getbuffer().nbytes
    with tempfile.TemporaryDirectory(prefix="verify-rate-") as tmp:
        start = time.process_time()
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            for info in zf.infolist():
                data = zf.read(info)  # inflate + CRC check
                hashlib.md5(data).hexdigest()
                with open(os.path.join(tmp, info.filename), "wb") as out:
                    out.write(data)
        cpu = time.process_time() - start
    out_mb = n_files * side * side * 2 / 1e6
    return {
        "dicom_MBps_per_core": out_mb / cpu,
        "files_per_s_per_core": n_files / cpu,
        "synthetic_wire_ratio": wire / (out_mb * 1e6),
        "file_mb": file_mb,
    }


def wide_area_model(catalog: Path) -> dict[str, Any]:
    import duckdb

    rate = measure_verify_rate()
    out: dict[str, Any] = {"assumptions": MODEL, "measured_verify": rate, "subsets": {}}
    con = duckdb.connect()
    for name, where in SUBSETS.items():
        n, files, size = con.execute(
            "SELECT count(*), sum(instanceCount), sum(series_size_MB) * 1e6 FROM read_parquet(?)"
            f" WHERE {where}",  # the WHERE clauses are the fixed literals in SUBSETS
            [str(catalog)],
        ).fetchone()
        out["subsets"][name] = {
            "series": n,
            "files": int(files),
            "bytes": float(size),
            "scenarios": scenarios(int(n), int(files), float(size), rate),
        }
    return out


def scenarios(n: int, files: int, size: float, rate: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for c in MODEL["connections"]:
        for ratio in MODEL["wire_ratio"]:
            download = n * MODEL["latency_s"] + ratio * size / (MODEL["per_connection_MBps"] * 1e6)
            upload = files * MODEL["s3_put_s"]
            hours_local = download / c / 3600
            hours_s3 = (download + upload) / c / 3600
            dicom_MBps = size / 1e6 / (hours_local * 3600)
            rows.append(
                {
                    "connections": c,
                    "wire_ratio": ratio,
                    "hours_local_dest": round(hours_local, 1),
                    "hours_s3_dest": round(hours_s3, 1),
                    "wire_MBps": round(ratio * size / 1e6 / (hours_local * 3600), 1),
                    "dicom_MBps": round(dicom_MBps, 1),
                    "files_per_s": round(files / (hours_local * 3600), 1),
                    "verify_cores": round(
                        max(
                            dicom_MBps / rate["dicom_MBps_per_core"],
                            files / (hours_local * 3600) / rate["files_per_s_per_core"],
                        ),
                        1,
                    ),
                    "workers_at_8_slots": -(-c // 8),
                }
            )
    return rows


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    ledger_path = Path(args.ledger)
    if args.phase == "first":
        out = phase_first(args, ledger_path)
    elif args.phase == "unchanged":
        out = phase_replan(args, ledger_path, 0, nightly=False)
    elif args.phase == "changed_1pct":
        out = phase_replan(args, ledger_path, 100, nightly=False)
    elif args.phase == "nightly_noop":
        out = phase_replan(args, ledger_path, 0, nightly=True)
    elif args.phase == "nightly_1pct":
        out = phase_replan(args, ledger_path, 100, nightly=True)
    else:
        out = phase_entries(args, ledger_path)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def spawn(args: argparse.Namespace, phase: str, ledger: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--ledger",
        str(ledger),
        "--catalog",
        str(args.catalog),
        "--repeats",
        str(args.repeats),
        "--sample",
        str(args.sample),
    ]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{phase}: {json.dumps(result, default=str)}", file=sys.stderr)
    return result


def phases(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp:
        ledger = Path(args.keep_ledger) if args.keep_ledger else Path(tmp) / "ledger.sqlite"
        for phase in PHASES:
            if phase == "first" and ledger.exists():
                continue  # --keep-ledger: reuse the populated ledger of an earlier run
            with load_round(phase):
                load_before = os.getloadavg()[0]
                result = spawn(args, phase, ledger)
                result["load_1min"] = [load_before, os.getloadavg()[0]]
            yield phase, result


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    write_result(
        "plan_scale",
        {
            "settings": {
                "catalog": str(args.catalog),
                "limit": args.limit,
                "repeats": args.repeats,
                "commit_sample": args.sample,
            },
            "phases": results,
        },
    )
    if "first" in results:
        readme_rows(results)  # rows live in the result JSON; run_all renders the README


def readme_rows(results: dict[str, dict[str, Any]]) -> None:
    first = results["first"]
    label = f"{first['series'] / 1e6:.2f}M series"
    rows = [
        ("plan, empty ledger (first mirror)", "first"),
        ("plan, nothing changed (--full)", "unchanged"),
        ("plan, 1 % changed (--full)", "changed_1pct"),
        ("plan, nightly nothing new", "nightly_noop"),
        ("plan, nightly 1 % listed", "nightly_1pct"),
    ]
    for metric, phase in rows:
        r = results[phase]
        cell = f"{r['plan_s']:.1f} s, {r['peak_rss_mb']:.0f} MB RSS"
        if "full_s" in r:  # the --full reconcile: listing table + columnar plan
            cell = (
                f"{r['full_s']:.1f} s (listing table {r['load_listing_s']:.1f} s + plan"
                f" {r['plan_s']:.1f} s), {r['peak_rss_mb']:.0f} MB RSS"
            )
        update_row("plan_scale", f"{metric}, {label} (s, peak RSS)", [cell, "-", "-", "-"])
    update_row(
        "plan_scale",
        f"ledger open, {label} (s)",
        [f"{results['unchanged']['ledger_open_s']:.3f}", "-", "-", "-"],
    )
    update_row(
        "plan_scale", f"ledger size, {label} (MB)", [f"{first['ledger_mb']:.0f}", "-", "-", "-"]
    )
    update_row(
        "plan_scale",
        "ledger commit per series, fsynced (ms)",
        [f"{first['commit_per_series_ms']:.2f}", "-", "-", "-"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--limit", type=int, default=None, help="only the first N series")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20000, help="series committed one by one")
    parser.add_argument("--model-only", action="store_true", help="only the wide-area model")
    parser.add_argument("--no-model", action="store_true", help="skip the wide-area model")
    parser.add_argument("--keep-ledger", default=None, help="ledger path to keep and reuse")
    parser.add_argument("--phase", choices=PHASES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ledger", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args), default=str))
        return 0
    if not args.no_model:
        with load_round("model"):
            model = wide_area_model(args.catalog)
        write_result("plan_scale_model", {"model": model})
        rate = model["measured_verify"]
        update_row(
            "plan_scale",
            "verify on one core: inflate+CRC+MD5+write, 0.5 MB files",
            [
                f"{rate['dicom_MBps_per_core']:.0f} MB/s,"
                f" {rate['files_per_s_per_core']:.0f} files/s",
                *("-", "-", "-"),
            ],
        )
        print(json.dumps(model, indent=2))
    if args.model_only:
        return 0
    results = dict(phases(args))
    report(results, args)
    print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
