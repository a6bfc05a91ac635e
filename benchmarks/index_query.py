"""Query latency at full-archive scale: `mirror query` vs raw DuckDB vs idc-index.

Builds a real index snapshot (through the same writer and pointer `mirror index build` uses)
whose ``series`` table is shaped like ``/work/shared/data/all_series_catalog.parquet``
(1.04M series, its real columns and values; the columns it lacks are filled plainly), then
times typical cohort queries, each from a fresh process:

* mirror: the ``mirror query --dest D SQL --format csv --out /dev/null`` command;
* raw DuckDB: ``python -c`` with duckdb over the same Parquet files (result to Arrow, then CSV);
* idc-index: ``IDCClient().sql_query`` on its bundled index (the same SQL over its ``index``
  table). Its client takes tens of seconds to start, so each run starts it once and times
  the queries in that process; its cold latency is quoted as start-up + query.

Peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). Three runs, medians.
Writes ``benchmarks/results/index_query.json`` and rows in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mirror.index import build as build_mod
from mirror.index.publish import new_snapshot_id, publish, read_pointer
from mirror.index.schema import schema
from mirror.storage import open_store

CATALOG = Path("/work/shared/data/all_series_catalog.parquet")
TIME = "/usr/bin/time"  # GNU time (Debian package "time")
QUERIES = {
    "cohort: TCGA lung chest CT, Siemens, >100 slices": (
        "SELECT SeriesInstanceUID, PatientID, instanceCount FROM {t} "
        "WHERE collection_id IN ('tcga_luad', 'tcga_lusc') AND Modality = 'CT' "
        "AND upper(BodyPartExamined) LIKE '%CHEST%' AND upper(Manufacturer) LIKE '%SIEMENS%' "
        "AND instanceCount > 100"),
    "summary: series and MB by modality": (
        "SELECT Modality, count(*) AS series, sum(series_size_MB) AS mb FROM {t} "
        "GROUP BY Modality ORDER BY series DESC"),
    "summary: patients per collection (top 20)": (
        "SELECT collection_id, count(DISTINCT PatientID) AS patients, count(*) AS series "
        "FROM {t} GROUP BY collection_id ORDER BY series DESC LIMIT 20"),
    "lookup: one series by UID": "SELECT * FROM {t} WHERE SeriesInstanceUID = '{uid}'",
    "search: MR T1 descriptions": (
        "SELECT collection_id, SeriesDescription, count(*) AS n FROM {t} WHERE Modality = 'MR' "
        "AND SeriesDescription ILIKE '%t1%' GROUP BY ALL ORDER BY n DESC LIMIT 10"),
}


def series_table(catalog: pa.Table) -> pa.Table:
    """The catalog as the mirror's ``series`` table (missing columns filled plainly)."""
    n = catalog.num_rows
    target = schema("series")
    cols: dict[str, pa.Array] = {}
    for field in target:
        if field.name in catalog.column_names:
            cols[field.name] = catalog.column(field.name).cast(field.type)
        else:
            cols[field.name] = pa.nulls(n, field.type)
    cid = catalog.column("collection_id")
    cols["SeriesDate"] = catalog.column("StudyDate")
    cols["Collection"] = pc.utf8_upper(pc.replace_substring(cid, "_", "-"))
    cols["series_path"] = pc.binary_join_element_wise(
        cols["Collection"], catalog.column("PatientID"), catalog.column("StudyInstanceUID"),
        catalog.column("SeriesInstanceUID"), "/")
    cols["content_hash"] = pa.array(
        [hashlib.md5(u.encode()).hexdigest()
         for u in catalog.column("SeriesInstanceUID").to_pylist()])
    cols["series_version"] = pa.array([1] * n, pa.int64())
    cols["license_short_name"] = pa.array(["CC BY 4.0"] * n)
    cols["run_id"] = pa.array(["bench"] * n)
    cols["unreadable_instances"] = pa.array([0] * n, pa.int64())
    return pa.table(cols, schema=target)


def make_index(dest: Path) -> tuple[str, float]:
    """Publish a snapshot of the catalog-shaped series table; returns (snapshot, seconds)."""
    store = open_store(str(dest))
    series = series_table(pq.read_table(CATALOG))
    start = time.perf_counter()
    snapshot_id = new_snapshot_id()
    files: dict[str, list[tuple[str, int]]] = {t: [] for t in build_mod.TABLES}
    build_mod._write_collections(store, snapshot_id, series, files)
    publish(store, build_mod._pointer(snapshot_id, files, None))
    return snapshot_id, time.perf_counter() - start


def timed_child(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one child process.

    RSS comes from GNU time's %M: the child's own ``ru_maxrss`` would start at this (large)
    process's high-water mark, since Linux carries it across fork.
    """
    start = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as stats, tempfile.TemporaryFile() as errfile:
        proc = subprocess.run([TIME, "-f", "%M", "-o", stats.name, *cmd], stdout=subprocess.PIPE,
                              stderr=errfile, check=False)
        elapsed = time.perf_counter() - start
        errfile.seek(0)
        err = errfile.read().decode(errors="replace")
        rss_kb = float(stats.read().strip().splitlines()[-1])
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, rss_kb / 1024, proc.stdout.decode()


API = """
import sys
from mirror.index import query
import pyarrow.csv as pcsv
pcsv.write_csv(query(sys.argv[2], sys.argv[1]), "/dev/null")
"""
RAW = """
import sys, duckdb, pyarrow.csv as pcsv
t = duckdb.sql(sys.argv[1]).to_arrow_table()
pcsv.write_csv(t, "/dev/null")
"""
IDC = """
import json, sys, time
t0 = time.perf_counter()
from idc_index import IDCClient
client = IDCClient()
out = {"init": time.perf_counter() - t0, "queries": {}}
for name, sql in json.loads(sys.argv[1]).items():
    t = time.perf_counter()
    df = client.sql_query(sql)
    out["queries"][name] = [time.perf_counter() - t, len(df)]
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="Keep the generated index here.")
    parser.add_argument("--no-idc", action="store_true", help="Skip the idc-index peer.")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="index-query-"))
    dest = work / "mirror"
    if read_pointer(open_store(str(dest))) is None:
        snapshot, write_s = make_index(dest)
    else:
        snapshot, write_s = read_pointer(open_store(str(dest))).snapshot_id, float("nan")
    uid = pq.read_table(CATALOG, columns=["SeriesInstanceUID"]).column(0)[123456].as_py()
    sqls = {k: v.replace("{uid}", uid) for k, v in QUERIES.items()}
    glob = f"read_parquet('{dest}/_index/snapshots/{snapshot}/series/*/*.parquet', " \
           "hive_partitioning = true)"
    mirror_exe = shutil.which("mirror") or "mirror"
    samples: dict[str, dict[str, list[list[float]]]] = {
        k: {"mirror": [], "api": [], "raw": [], "idc": []} for k in sqls}
    idc_init: list[float] = []
    idc_rss: list[float] = []
    rows: dict[str, dict[str, int]] = {k: {} for k in sqls}
    for _ in _common.rounds(args.runs, "queries"):
        for name, sql in sqls.items():
            m = timed_child([mirror_exe, "-q", "query", sql.format(t="series"), "--dest",
                             str(dest), "--format", "csv", "--out", "/dev/null"])
            a = timed_child([sys.executable, "-c", API, sql.format(t="series"), str(dest)])
            r = timed_child([sys.executable, "-c", RAW, sql.format(t=glob)])
            samples[name]["mirror"].append([m[0], m[1]])
            samples[name]["api"].append([a[0], a[1]])
            samples[name]["raw"].append([r[0], r[1]])
        if not args.no_idc:
            idc_sql = {k: v.format(t="index") for k, v in sqls.items()}
            _, rss, out = timed_child([sys.executable, "-c", IDC, json.dumps(idc_sql)])
            result = json.loads(out.strip().splitlines()[-1])
            idc_init.append(result["init"])
            idc_rss.append(rss)
            for name, (q_s, n) in result["queries"].items():
                samples[name]["idc"].append([result["init"] + q_s, rss, q_s])
                rows[name]["idc"] = n
    if args.no_idc:
        idc_init, idc_rss = carry_idc(samples, rows)
    report(samples, idc_init, idc_rss, rows, write_s, args, snapshot)


def carry_idc(samples, rows) -> tuple[list[float], list[float]]:
    """Reuse the idc-index samples of the previous result file (they take ~15 min to take)."""
    path = _common.RESULTS / "index_query.json"
    if not path.exists():
        return [], []
    old = json.loads(path.read_text())
    for name, per in samples.items():
        per["idc"] = old.get("samples", {}).get(name, {}).get("idc", [])
        rows[name] = old.get("idc_rows", {}).get(name, {})
    return old.get("idc_init_s", []), old.get("idc_rss_mb", [])


def _med(values: list[list[float]], i: int) -> float:
    return _common.median([v[i] for v in values])


def report(samples, idc_init, idc_rss, rows, write_s, args, snapshot) -> None:
    summary = {}
    for name, per in samples.items():
        entry = {"mirror_s": _med(per["mirror"], 0), "mirror_rss_mb": _med(per["mirror"], 1),
                 "mirror_api_s": _med(per["api"], 0), "mirror_api_rss_mb": _med(per["api"], 1),
                 "raw_duckdb_s": _med(per["raw"], 0), "raw_rss_mb": _med(per["raw"], 1)}
        if per["idc"]:
            entry |= {"idc_cold_s": _med(per["idc"], 0), "idc_query_only_s": _med(per["idc"], 2),
                      "idc_rss_mb": _med(per["idc"], 1)}
        summary[name] = entry
    _common.write_result("index_query", {
        "settings": {"runs": args.runs, "series": 1044191, "snapshot": snapshot,
                     "catalog": str(CATALOG), "loadavg_at_end": os.getloadavg()},
        "index_write_s": write_s, "idc_init_s": idc_init, "idc_rss_mb": idc_rss,
        "samples": samples, "median": summary, "idc_rows": rows,
        "note": "2-core VM shared with other engineers' jobs; cold = new process per query"
                + ("; idc samples carried from the previous run" if args.no_idc else ""),
    })
    m = _common.median([v["mirror_s"] for v in summary.values()])
    api = _common.median([v["mirror_api_s"] for v in summary.values()])
    raw = _common.median([v["raw_duckdb_s"] for v in summary.values()])
    rss = max(v["mirror_rss_mb"] for v in summary.values())
    idc = _common.median([v.get("idc_cold_s", float("nan")) for v in summary.values()])
    idc_q = _common.median([v.get("idc_query_only_s", float("nan")) for v in summary.values()])
    _common.update_row("index_query", "cohort SQL, 1.04M series, cold process (s, median of "
                       f"{len(summary)} queries)", [
        f"{m:.2f} s CLI / {api:.2f} s Python API, peak {rss:.0f} MB RSS",
        f"{raw:.2f} s (raw DuckDB, same Parquet)",
        f"{idc:.1f} s cold / {idc_q:.1f} s per query (idc-index 0.13.4)",
        f"CLI {m / raw:.2f}x / API {api / raw:.2f}x raw; {idc / m:.0f}x faster than idc-index",
    ])
    for name, v in summary.items():
        print(f"{name}: {json.dumps(v)}")


if __name__ == "__main__":
    main()
