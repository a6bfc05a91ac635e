"""`mirror serve` against Orthanc + DICOMweb plugin, in one run, on the same files.

Corpus: one instance per series for every TCGA radiology series in
``/work/shared/data/tcga_catalog.parquet`` (about 11,700 series in 2,057 studies, real UIDs,
patients and modalities; pixels from pydicom's CT/MR test files), plus one 300-slice
512x512 CT series. The mirror is committed as sync commits it and indexed by
``build_index``; Orthanc must import every file first (timed; ``mirror serve`` needs none).

Measured over HTTP/1.1 keep-alive from this process, each server in its own process:
QIDO latency for OHIF's study list and for series searches, series-metadata latency of the
300-slice CT (first and repeated), WADO-RS frames/s over that series (one frame per request
as OHIF asks, sequential and 6 in flight), and the time until OHIF shows the first image
(mirror only: Debian's Orthanc has no OHIF). Medians of ``--repeat`` runs.
Writes ``benchmarks/results/serve.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
import httpx
import numpy as np
import pyarrow.parquet as pq
import pydicom
from pydicom.data import get_testdata_file

from mirror.index.build import build_index
from mirror.layout import InstanceEntry, SeriesSidecar, series_path
from mirror.storage import open_store
from mirror.storage.port import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))
from orthanc_ref import free_port, run_orthanc

CATALOG = Path("/work/shared/data/tcga_catalog.parquet")
FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
STUDY_LIST = ("/studies?limit=101&offset=0&fuzzymatching=false"
              "&includefield=00081030%2C00080060%2C00080090%2C00100030")
CT_UID = "1.2.826.0.1.3680043.8.498.1"


def catalog_rows(limit: int | None) -> list[dict[str, object]]:
    table = pq.read_table(CATALOG)
    rows = [r for r in table.to_pylist()
            if r["analysis_result_id"] is None and r["Modality"] != "SM"]
    return rows[:limit] if limit else rows


def dicom_bytes(template: pydicom.Dataset, row: dict[str, object], sop: str,
                number: int = 1) -> bytes:
    ds = template.copy()
    ds.PatientID = str(row["PatientID"])
    ds.PatientName = str(row["PatientID"]).replace("-", "^", 1)
    ds.StudyInstanceUID = str(row["StudyInstanceUID"])
    ds.SeriesInstanceUID = str(row["SeriesInstanceUID"])
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.Modality = str(row["Modality"])
    ds.SeriesDescription = str(row.get("SeriesDescription") or "")[:64]
    ds.StudyDate = row["StudyDate"].strftime("%Y%m%d") if row.get("StudyDate") else ""
    ds.InstanceNumber = number
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def big_ct_template() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.tile(ds.pixel_array, (4, 4))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def commit(store: Store, row: dict[str, object], blobs: list[bytes]) -> None:
    path = series_path(collection=str(row["collection_id"]).upper().replace("_", "-"),
                       patient_id=str(row["PatientID"]), study_uid=str(row["StudyInstanceUID"]),
                       series_uid=str(row["SeriesInstanceUID"]))
    entries = []
    for n, blob in enumerate(blobs):
        name = f"1-{n + 1:03d}.dcm"
        store.put_bytes(f"{path}/{name}", blob)
        entries.append(InstanceEntry(name, hashlib.md5(blob).hexdigest(), len(blob)))
    sidecar = SeriesSidecar(
        series_uid=str(row["SeriesInstanceUID"]), study_uid=str(row["StudyInstanceUID"]),
        patient_id=str(row["PatientID"]), collection=path.split("/")[0],
        modality=str(row["Modality"]), path=path, instances=tuple(entries),
        fingerprint=(len(blobs), sum(e.size for e in entries), "", ""), series_version=1,
        run_id="bench", synced_at="2026-12-06T00:00:00+00:00", tool_version="bench")
    store.put_bytes(f"{path}/_series.json", sidecar.to_json())


def make_corpus(store: Store, rows: list[dict[str, object]], slices: int) -> list[bytes]:
    """Commit the mirror; return every file (for Orthanc's import)."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    files: list[bytes] = []
    for k, row in enumerate(rows):
        blob = dicom_bytes(mr if row["Modality"] == "MR" else ct, row, f"{CT_UID}.9.{k}")
        commit(store, row, [blob])
        files.append(blob)
    big = {**rows[0], "StudyInstanceUID": f"{CT_UID}.1", "SeriesInstanceUID": f"{CT_UID}.2",
           "PatientID": "BENCH-CT", "Modality": "CT", "SeriesDescription": "300 slices"}
    template = big_ct_template()
    blobs = []
    for n in range(slices):
        template.ImagePositionPatient = [0, 0, 1.25 * n]
        blobs.append(dicom_bytes(template, big, f"{CT_UID}.3.{n}", n + 1))
    commit(store, big, blobs)
    return files + blobs


def import_orthanc(base: str, files: list[bytes]) -> float:
    start = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        def post(blob: bytes) -> None:
            client.post(f"{base}/instances", content=blob,
                        headers={"Content-Type": "application/dicom"}).raise_for_status()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, files))
    return time.perf_counter() - start


def start_mirror(dest: Path) -> tuple[subprocess.Popen[str], str, float]:
    """`mirror serve` in its own process; returns it, its URL and seconds until listening."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "from mirror.cli import main; main()",
                             "serve", "--dest", str(dest), "--port", str(free_port())],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
        if found:
            return proc, found.group(1), time.perf_counter() - start
    raise RuntimeError(f"mirror serve exited with {proc.wait()}")


def latency_ms(client: httpx.Client, url: str, repeat: int,
               headers: dict[str, str] | None = None) -> dict[str, float]:
    def once() -> float:
        start = time.perf_counter()
        r = client.get(url, headers=headers)
        r.raise_for_status()
        return (time.perf_counter() - start) * 1000
    first = once()
    runs = [once() for _ in range(repeat)]
    return {"first_ms": round(first, 2), "median_ms": round(_common.median(runs), 2)}


def frames_per_second(client: httpx.Client, urls: list[str], workers: int) -> float:
    def get(url: str) -> int:
        r = client.get(url, headers={"Accept": FRAMES_ACCEPT})
        r.raise_for_status()
        return len(r.content)
    start = time.perf_counter()
    if workers == 1:
        for url in urls:
            get(url)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(get, urls))
    return len(urls) / (time.perf_counter() - start)


def measure(root: str, slices: int, repeat: int) -> dict[str, object]:
    """Every QIDO/WADO figure against one DICOMweb root."""
    study, series = f"{CT_UID}.1", f"{CT_UID}.2"
    frames = [f"{root}/studies/{study}/series/{series}/instances/{CT_UID}.3.{n}/frames/1"
              for n in range(slices)]
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(timeout=300, limits=limits) as client:
        json_accept = {"Accept": "application/dicom+json"}
        out: dict[str, object] = {
            "qido_study_list": latency_ms(client, root + STUDY_LIST, repeat, json_accept),
            "qido_studies_by_patient": latency_ms(
                client, root + "/studies?00100020=TCGA-02-0003", repeat, json_accept),
            "qido_series_of_study": latency_ms(
                client, f"{root}/studies/{study}/series?includefield=00080021%2C00080031"
                "%2C0008103E%2C00200011", repeat, json_accept),
            "qido_series_search_mr": latency_ms(
                client, root + "/series?Modality=MR&limit=100", repeat, json_accept),
            "series_metadata_300": latency_ms(
                client, f"{root}/studies/{study}/series/{series}/metadata", repeat, json_accept),
        }
        fps = [frames_per_second(client, frames, 1) for _ in range(repeat)]
        fps6 = [frames_per_second(client, frames, 6) for _ in range(repeat)]
        out["frames_per_s_sequential"] = round(_common.median(fps), 1)
        out["frames_per_s_6_in_flight"] = round(_common.median(fps6), 1)
    return out


def ohif_first_image(base: str, study: str) -> float | None:
    """Seconds from navigation to every viewport rendered, or None without the browser."""
    import shutil

    cache = Path.home() / ".cache/tcia-mirror/ohif"
    browser = shutil.which("chromium")
    if browser is None or not any(cache.glob("*/dist/index.html")):
        return None
    from playwright.sync_api import sync_playwright

    rendered = ("() => { const vps = window.cornerstone?.getRenderingEngines?.()"
                ".flatMap(e => e.getViewports()) ?? []; return vps.length > 0 && "
                "vps.every(v => v.viewportStatus === 'rendered'); }")
    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=browser, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = chrome.new_page(viewport={"width": 1280, "height": 900})
            start = time.perf_counter()
            page.goto(f"{base}/viewer?StudyInstanceUIDs={study}")
            page.wait_for_function(rendered, timeout=120_000)
            return time.perf_counter() - start
        finally:
            chrome.close()


def viewer_server(dest: Path) -> Iterator[str]:
    dist = sorted((Path.home() / ".cache/tcia-mirror/ohif").glob("*/dist/index.html"))
    proc = subprocess.Popen([sys.executable, "-c", "from mirror.cli import main; main()",
                             "serve", "--dest", str(dest), "--port", str(free_port()),
                             "--viewer", str(dist[-1].parent)], stderr=subprocess.PIPE,
                            text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if found:
                yield found.group(1)
                return
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=None, help="cap the catalog series")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", default=None, help="working folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-serve-"))
    dest = work / "mirror"
    store = open_store(str(dest))
    rows = catalog_rows(args.series)
    corpus_s = time.perf_counter()
    files = make_corpus(store, rows, args.slices)
    corpus_s = time.perf_counter() - corpus_s
    index_s = timed(lambda: build_index(store))
    print(f"corpus {len(rows)} series + {args.slices}-slice CT in {corpus_s:.0f}s, "
          f"index {index_s:.0f}s", file=sys.stderr)

    proc, url, start_s = start_mirror(dest)
    try:
        ours = measure(url + "/dicomweb", args.slices, args.repeat)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    ours["startup_s"] = round(start_s, 2)
    ours["import_s"] = 0.0
    print("mirror", ours, file=sys.stderr)

    with run_orthanc("/usr/sbin/Orthanc", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                     work / "orthanc") as orthanc:
        import_s = import_orthanc(orthanc, files)
        theirs = measure(orthanc + "/dicom-web", args.slices, args.repeat)
    theirs["import_s"] = round(import_s, 1)
    print("orthanc", theirs, file=sys.stderr)

    first_image = None
    for base in viewer_server(dest):
        first_image = ohif_first_image(base, f"{CT_UID}.1")
    ours["ohif_first_image_s"] = round(first_image, 2) if first_image else None

    path = _common.write_result("serve", {
        "series": len(rows) + 1, "studies": len({r["StudyInstanceUID"] for r in rows}) + 1,
        "files": len(files), "ct_slices": args.slices, "repeat": args.repeat,
        "index_build_s": round(index_s, 1), "mirror": ours, "orthanc": theirs,
        "orthanc_version": "1.10.1 + DICOMweb 1.7 (Debian 12)",
    })
    print(path)


if __name__ == "__main__":
    main()
