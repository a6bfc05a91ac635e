"""Index build rate: `build_index` against the bare header scan on one core, and 1 -> 2 workers.

Lays out series of real CT headers (pydicom's CT_small.dcm, re-identified per slice, pixel
data optionally grown to ``--pixels`` squared) in the committed layout: ``--series`` x
``--slices`` uniform series, or with ``--catalog`` a seeded sample of the real IDC catalogue's
series sizes (half of all series hold one instance). Then, in one process tree:

* per core: this process pinned to one CPU alternates a bare loop of
  ``pydicom.dcmread(path, stop_before_pixels=True)`` over the same files with
  ``build_index(store, full=True)`` inline (no Dask); the ratio is taken per round;
* scaling: an embedded LocalCluster with 1 worker process and one with 2 stay up side by
  side, and full builds alternate between them; the ratio is taken per round.

Every round waits (bounded) for a quiet machine and records the 1-minute load average before
and after it (``_common.load_round``; a round that starts above 1.5 is marked). Writes
``benchmarks/results/index_build.json`` and a row in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from mirror.index.build import build_index
from mirror.index.cluster import dask_client
from mirror.layout import InstanceEntry, SeriesSidecar, series_path
from mirror.storage import open_store

CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "all_series_catalog.parquet"
QUIET = 1.5  # 1-minute load average above which a round is marked


def _slice(template: pydicom.Dataset, series_uid: str, study_uid: str, i: int) -> bytes:
    ds = template.copy()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(i)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = i + 1
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def template(pixels: int) -> pydicom.Dataset:
    """CT_small.dcm, its pixel data grown to ``pixels`` squared (512: a real CT slice)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    if pixels != ds.Rows:
        ds.Rows = ds.Columns = pixels
        ds.PixelData = bytes(pixels * pixels * 2)
    return ds


def series_sizes(args: argparse.Namespace) -> list[tuple[str, int]]:
    """``(collection, slices)`` per series: uniform, or sizes sampled from the IDC catalogue.

    Either way the series fall into four collections: a random sample of the catalogue
    would spread 400 series over ~100 collections, one part file each per table, a
    partitioning no real mirror has (it holds thousands of series per collection).
    """
    if not args.catalog:
        return [(f"BENCH-{s % 4}", args.slices) for s in range(args.series)]
    import pyarrow.parquet as pq

    counts = pq.read_table(args.catalog, columns=["instanceCount"]).column(0).to_pylist()
    rows = random.Random(0).sample(range(len(counts)), args.series)
    return [(f"BENCH-{i % 4}", max(1, min(counts[r], args.max_slices)))
            for i, r in enumerate(rows)]


def lay_out(root: Path, sizes: list[tuple[str, int]], pixels: int) -> list[str]:
    """Committed series (files, then the sidecar); returns the file paths."""
    ct = template(pixels)
    store = open_store(str(root))
    paths: list[str] = []
    for s, (collection, slices) in enumerate(sizes):
        patient = f"P{s // 3:04d}"
        study = generate_uid(entropy_srcs=[collection, patient])
        series = generate_uid(entropy_srcs=[collection, patient, str(s)])
        path = series_path(collection=collection, patient_id=patient, study_uid=study,
                           series_uid=series)
        entries = []
        (root / path).mkdir(parents=True, exist_ok=True)
        for i in range(slices):
            blob = _slice(ct, series, study, i)
            name = f"1-{i + 1:04d}.dcm"
            (root / path / name).write_bytes(blob)
            entries.append(InstanceEntry(name, hashlib.md5(blob).hexdigest(), len(blob)))
            paths.append(str(root / path / name))
        sidecar = SeriesSidecar(series, study, patient, collection, "CT", path, tuple(entries),
                                (slices, 0, "", ""), 1, "bench", "2026-11-22T00:00:00+00:00",
                                "bench", "CC BY 4.0")
        store.put_bytes(f"{path}/_series.json", sidecar.to_json())
    return paths


def bare_scan(paths: list[str]) -> float:
    start = time.perf_counter()
    for path in paths:
        pydicom.dcmread(path, stop_before_pixels=True)
    return time.perf_counter() - start


def timed_build(root: Path, client: object | None) -> float:
    store = open_store(str(root))
    start = time.perf_counter()
    build_index(store, client=client, full=True, keep=1)
    return time.perf_counter() - start


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """Pin this process to one CPU (the per-core figure), and unpin it afterwards."""
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def per_core(root: Path, paths: list[str], runs: int) -> dict[str, Any]:
    """Bare scan and inline build alternating on one pinned core; ratio per round."""
    out: dict[str, Any] = {"bare": [], "inline": [], "ratio": [], "load": []}
    n = len(paths)
    with one_core() as cpu:
        bare_scan(paths[:200])  # page cache and imports warm for both
        timed_build(root, None)
        for _ in _common.rounds(runs, "per core"):
            out["load"].append(load())
            bare, inline = n / bare_scan(paths), n / timed_build(root, None)
            out["bare"].append(bare)
            out["inline"].append(inline)
            out["ratio"].append(inline / bare)
    out["cpu"] = cpu
    return out


def scaling(root: Path, n: int, runs: int) -> dict[str, Any]:
    """Full builds alternating between a 1-worker and a 2-worker cluster; ratio per round."""
    out: dict[str, Any] = {"dask1": [], "dask2": [], "ratio": [], "load": []}
    with dask_client(workers=1) as one, dask_client(workers=2) as two:
        timed_build(root, one)  # warm the workers' imports
        timed_build(root, two)
        for _ in _common.rounds(runs, "1 vs 2 workers"):
            out["load"].append(load())
            d1, d2 = n / timed_build(root, one), n / timed_build(root, two)
            out["dask1"].append(d1)
            out["dask2"].append(d2)
            out["ratio"].append(d2 / d1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--slices", type=int, default=50)
    parser.add_argument("--catalog", type=Path, nargs="?", const=CATALOG, default=None,
                        help="sample series sizes from this catalogue (default: IDC's)")
    parser.add_argument("--max-slices", type=int, default=300)
    parser.add_argument("--pixels", type=int, default=128, help="rows = columns per slice")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--name", default="index_build", help="result file name")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="index-build-") as tmp:
        root = Path(tmp) / "mirror"
        sizes = series_sizes(args)
        paths = lay_out(root, sizes, args.pixels)
        n = len(paths)
        core = per_core(root, paths, args.runs)
        scale = scaling(root, n, args.runs)
    load_after = os.getloadavg()
    med = {"limit": _common.median(core["bare"]), "inline": _common.median(core["inline"]),
           "dask1": _common.median(scale["dask1"]), "dask2": _common.median(scale["dask2"])}
    ratio, speedup = _common.median(core["ratio"]), _common.median(scale["ratio"])
    noisy = max(core["load"] + scale["load"]) > QUIET
    _common.write_result(args.name, {
        "settings": {"series": len(sizes), "instances": n, "pixels": args.pixels,
                     "sizes": "catalogue sample" if args.catalog else f"{args.slices} each",
                     "runs": args.runs},
        "loadavg_before": load_before, "loadavg_after": load_after,
        "per_core": core, "scaling": scale, "median_instances_per_s": med,
        "ratio_inline_to_limit": ratio, "scaling_1_to_2_workers": speedup,
        "quiet": not noisy,
        "note": "ratios are medians of per-round ratios (bare and build alternate)",
    })
    what = "catalogue-sized series" if args.catalog else "CT instances"
    _common.update_row("index_build", f"header extraction, {n} {what} (instances/s)", [
        f"{med['inline']:.0f} inline on 1 core, {med['dask1']:.0f} (1 worker), "
        f"{med['dask2']:.0f} (2 workers)",
        f"{med['limit']:.0f} (bare dcmread loop, 1 core)", "-",
        f"{ratio:.2f}x of limit per core; 1->2 workers {speedup:.2f}x; "
        f"load {load_before[0]:.1f}->{load_after[0]:.1f}{' (noisy)' if noisy else ''}",
    ])
    print(f"per core {ratio:.2f}x of the bare scan, 1->2 workers {speedup:.2f}x, "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}; {med}")


if __name__ == "__main__":
    main()
