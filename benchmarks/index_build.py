"""Index build rate: `build_index` vs the bare header-scan limit, and 1 -> 2 Dask workers.

Lays out N series of real CT headers (pydicom's CT_small.dcm, re-identified per slice) in the
committed layout, then in one run, three times each:

* limit: a bare loop of ``pydicom.dcmread(path, stop_before_pixels=True)`` over the same files;
* mirror inline: ``build_index(store, full=True)`` in this process (no Dask);
* mirror on Dask: the same on an embedded LocalCluster with 1 and then 2 worker processes.

Writes ``benchmarks/results/index_build.json`` and rows in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tempfile
import time
from pathlib import Path

import _common
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from mirror.index.build import build_index
from mirror.index.cluster import dask_client
from mirror.layout import InstanceEntry, SeriesSidecar, series_path
from mirror.storage import open_store


def _slice(template: pydicom.Dataset, series_uid: str, study_uid: str, i: int) -> bytes:
    ds = template.copy()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(i)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = i + 1
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def lay_out(root: Path, n_series: int, slices: int) -> list[str]:
    """Committed series (files, then the sidecar); returns the file paths."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    store = open_store(str(root))
    paths: list[str] = []
    for s in range(n_series):
        collection = f"BENCH-{s % 4}"
        patient = f"P{s // 3:04d}"
        study = generate_uid(entropy_srcs=[collection, patient])
        series = generate_uid(entropy_srcs=[collection, patient, str(s)])
        path = series_path(collection=collection, patient_id=patient, study_uid=study,
                           series_uid=series)
        entries = []
        for i in range(slices):
            blob = _slice(template, series, study, i)
            name = f"1-{i + 1:04d}.dcm"
            (root / path).mkdir(parents=True, exist_ok=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=60)
    parser.add_argument("--slices", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="index-build-") as tmp:
        root = Path(tmp) / "mirror"
        paths = lay_out(root, args.series, args.slices)
        n = len(paths)
        samples: dict[str, list[float]] = {"limit": [], "inline": [], "dask1": [], "dask2": []}
        for _ in _common.rounds(args.runs, "limit+inline"):
            samples["limit"].append(n / bare_scan(paths))
            samples["inline"].append(n / timed_build(root, None))
        for workers in (1, 2):
            with dask_client(workers=workers) as client:
                timed_build(root, client)  # warm the workers' imports
                for _ in _common.rounds(args.runs, f"dask{workers}"):
                    samples[f"dask{workers}"].append(n / timed_build(root, client))
    med = {k: _common.median(v) for k, v in samples.items()}
    load = os.getloadavg()
    _common.write_result("index_build", {
        "settings": {"series": args.series, "slices": args.slices, "instances": n,
                     "runs": args.runs, "loadavg_at_end": load},
        "instances_per_s": samples, "median_instances_per_s": med,
        "ratio_inline_to_limit": med["inline"] / med["limit"],
        "scaling_1_to_2_workers": med["dask2"] / med["dask1"],
        "note": "2-core VM shared with other engineers' jobs; see loadavg",
    })
    inline, one, two, limit = med["inline"], med["dask1"], med["dask2"], med["limit"]
    _common.update_row("index_build", f"header extraction, {n} CT instances (instances/s)", [
        f"{inline:.0f} inline, {one:.0f} (1 worker), {two:.0f} (2 workers)",
        f"{limit:.0f} (bare dcmread loop)", "-",
        f"{inline / limit:.2f}x of limit; 1->2 workers {two / one:.2f}x",
    ])
    print(med)


if __name__ == "__main__":
    main()
