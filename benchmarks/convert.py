"""DICOM -> OME-Zarr conversion speed: mirror vs dcm2niix vs SimpleITK vs the codec limit.

One run, one machine: a synthetic 300-slice 512x512 CT (realistic value mix: -2000 padding
outside the field of view, air, lung, soft tissue with noise, bone), once uncompressed and
once JPEG 2000 lossless. For each input, 3 repetitions (medians reported) of:

* mirror: ``convert_series`` on a laid-out destination (what ``mirror convert`` runs per
  series): header scan, assembly, decode in a thread pool, modality LUT, sharded OME-Zarr
  level 0 + 2 pyramid levels, metadata;
* dcm2niix ``-z n`` (uncompressed NIfTI: it does no encoding at all), wall time;
* SimpleITK ``ImageSeriesReader`` (GDCM): file ordering + read into memory, no output;
* codec limit: mirror's own decoder for every file (pixel bytes read where the header scan
  located them; imagecodecs for JPEG 2000) + blosc encode of the level-0 64^3 chunks with
  mirror's codec settings, in a pool as wide as mirror's; no header scan (done before the
  clock starts), no zarr, no pyramid, no output.

The JSON also records the blosc clevel measurement behind mirror's choice (zstd + bitshuffle,
clevel 1 vs 3: single-thread encode MB/s and compression ratio on the same chunks) and the
load average before and after (2 shared vCPUs).

Usage: ``python benchmarks/convert.py [--slices 300] [--size 512] [--workdir DIR] [--reps 3]``
Needs the ``bench`` extra (dcm2niix, SimpleITK).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, update_row, write_result

from mirror.convert import direct
from mirror.convert.pipeline import convert_series
from mirror.convert.scan import SliceHeader, scan_instance
from mirror.convert.values import stored_dtype
from mirror.convert.write import BLOSC_CLEVEL
from mirror.layout import SIDECAR_NAME, InstanceEntry, SeriesSidecar, series_path
from mirror.storage import open_store

THREADS = 2


def phantom(k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One CT slice in HU (int16): FOV circle, body ellipse, lungs, spine, noise."""
    i, j = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    img = np.full((size, size), -1000, dtype=np.float32)
    body = (i / 0.35) ** 2 + (j / 0.45) ** 2 < 1
    img[body] = 40
    for cx in (-0.2, 0.2):
        lung = ((i + 0.02 * np.sin(k / 20)) / 0.22) ** 2 + ((j - cx) / 0.15) ** 2 < 1
        img[lung] = -800
    img[(i - 0.2) ** 2 + j**2 < 0.003] = 700
    img += rng.normal(0, 20, img.shape).astype(np.float32) * body
    img[i**2 + j**2 > 0.25] = -2000
    return np.clip(np.rint(img), -2000, 3000).astype(np.int16)


def make_series(folder: Path, n: int, size: int, syntax: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    study, series, frame = (generate_uid(entropy_srcs=[s, syntax]) for s in ("st", "se", "for"))
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid(entropy_srcs=[syntax, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer, ds.PatientID, ds.PatientName = "CT", "SIM", "BENCH", "BENCH"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = n - k
        ds.ImagePositionPatient = [-250.0, -250.0, -300.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [500 / size, 500 / size]
        ds.SliceThickness = 1.25
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "HU"
        ds.PixelPaddingValue = -2000
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = phantom(k, size, rng).tobytes()
        if syntax == JPEG2000Lossless:
            ds.compress(JPEG2000Lossless)
        name = f"{hashlib.md5(sop.encode()).hexdigest()}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)


def lay_out(dest: Path, folder: Path) -> SeriesSidecar:
    """Commit ``folder`` into a local destination the way sync does (files + sidecar)."""
    store = open_store(str(dest))
    files = sorted(folder.iterdir())
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    path = series_path(collection="BENCH", patient_id="BENCH", study_uid=first.StudyInstanceUID,
                       series_uid=first.SeriesInstanceUID)
    entries = []
    for f in files:
        data = f.read_bytes()
        store.put_bytes(f"{path}/{f.name}", data)
        entries.append(InstanceEntry(f.name, hashlib.md5(data).hexdigest(), len(data)))
    sidecar = SeriesSidecar(
        series_uid=first.SeriesInstanceUID, study_uid=first.StudyInstanceUID, patient_id="BENCH",
        collection="BENCH", modality="CT", path=path, instances=tuple(entries),
        fingerprint=(len(entries), 0, "", ""), series_version=1, run_id="bench",
        synced_at="2026-01-01T00:00:00+00:00", tool_version="bench",
    )
    store.put_bytes(f"{path}/{SIDECAR_NAME}", sidecar.to_json())
    return sidecar


def warm(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            f.read_bytes()


def run_mirror(dest: Path, sidecar: SeriesSidecar) -> float:
    store = open_store(str(dest))
    start = time.perf_counter()
    result = convert_series(store, sidecar, force=True, threads=THREADS)
    elapsed = time.perf_counter() - start
    assert result.status == "converted" and result.written_stacks == 1, result
    return elapsed


def run_dcm2niix(folder: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(["dcm2niix", "-z", "n", "-f", "%s", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def run_sitk(folder: Path) -> float:
    import SimpleITK as sitk

    start = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    elapsed = time.perf_counter() - start
    assert image.GetSize()[2] > 0
    return elapsed


def _codec(clevel: int) -> Any:
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=clevel, shuffle=Blosc.BITSHUFFLE, typesize=2)


def _chunks(volume: np.ndarray) -> list[np.ndarray]:
    """Level-0 64^3 chunks as the bytes zarr hands to blosc."""
    return [
        np.ascontiguousarray(volume[z:z + 64, y:y + 64, x:x + 64]).reshape(-1).view(np.uint8)
        for z in range(0, volume.shape[0], 64)
        for y in range(0, volume.shape[1], 64)
        for x in range(0, volume.shape[2], 64)
    ]  # fmt: skip


def decode_all(folder: Path, headers: list[SliceHeader], pool: ThreadPoolExecutor) -> np.ndarray:
    first = headers[0]
    volume = np.empty((len(headers), first.rows, first.cols), dtype=stored_dtype(first))

    def one(k: int) -> None:
        with open(folder / headers[k].name, "rb") as fp:
            assert direct.read_file(fp, [(headers[k], volume[k])]), headers[k].name

    list(pool.map(one, range(len(headers))))
    return volume


def run_codec_limit(folder: Path) -> tuple[float, np.ndarray]:
    """mirror's decoder on every file, then mirror's blosc on every level-0 chunk, in a pool."""
    headers = scan_headers(folder)
    codec = _codec(BLOSC_CLEVEL)
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        volume = decode_all(folder, headers, pool)
        sizes = list(pool.map(lambda c: len(codec.encode(c)), _chunks(volume)))
    elapsed = time.perf_counter() - start
    assert sum(sizes) > 0
    return elapsed, volume


def scan_headers(folder: Path) -> list[SliceHeader]:
    headers = []
    for f in sorted(folder.iterdir()):
        with open(f, "rb") as fp:
            found = scan_instance(f.name, fp)
        assert isinstance(found, list) and all(direct.supported(h) for h in found), f
        headers.extend(found)
    return headers


def clevel_choice(volume: np.ndarray) -> dict[str, dict[str, float]]:
    """zstd+bitshuffle clevel 1 vs 3 on the same chunks: one thread, best of 3."""
    chunks = _chunks(volume)
    out = {}
    for clevel in (1, 3):
        codec = _codec(clevel)
        best = math.inf
        for _ in range(3):
            start = time.process_time()
            size = sum(len(codec.encode(c)) for c in chunks)
            best = min(best, time.process_time() - start)
        out[f"clevel{clevel}"] = {"encode_MB_per_s": round(volume.nbytes / 1e6 / best),
                                  "ratio": round(volume.nbytes / size, 3)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/mirror-bench-convert")
    parser.add_argument("--no-table", action="store_true", help="Do not touch README.md/results.")
    args = parser.parse_args()
    work = Path(args.workdir)
    results: dict[str, dict[str, list[float]]] = {}
    clevels: dict[str, dict[str, dict[str, float]]] = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for label, syntax in (("uncompressed", ExplicitVRLittleEndian), ("j2k", JPEG2000Lossless)):
        folder = work / f"{label}-{args.slices}x{args.size}"
        if not folder.exists() or len(list(folder.iterdir())) != args.slices:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"generating {folder} ...", flush=True)
            make_series(folder, args.slices, args.size, syntax)
        dest = work / f"dest-{label}"
        shutil.rmtree(dest, ignore_errors=True)
        sidecar = lay_out(dest, folder)
        warm(folder)
        warm(dest)
        times: dict[str, list[float]] = {"mirror": [], "dcm2niix": [], "simpleitk": [], "limit": []}
        for rep in range(args.reps):
            times["mirror"].append(run_mirror(dest, sidecar))
            times["dcm2niix"].append(run_dcm2niix(folder, work / f"nii-{label}"))
            times["simpleitk"].append(run_sitk(folder))
            limit, volume = run_codec_limit(folder)
            times["limit"].append(limit)
            print(label, rep, {k: round(v[-1], 3) for k, v in times.items()}, flush=True)
        results[label] = times
        clevels[label] = clevel_choice(volume)
    report(results, clevels, load_before, args, table=not args.no_table)


def report(
    results: dict[str, dict[str, list[float]]],
    clevels: dict[str, dict[str, dict[str, float]]],
    load_before: list[float],
    args: argparse.Namespace,
    *,
    table: bool = True,
) -> None:
    n = args.slices
    summary: dict[str, object] = {}
    for label, times in results.items():
        rate = {k: n / median(v) for k, v in times.items()}
        summary[label] = {
            "slices_per_s": {k: round(v, 1) for k, v in rate.items()},
            "mirror_vs_dcm2niix": round(rate["mirror"] / rate["dcm2niix"], 2),
            "mirror_vs_simpleitk": round(rate["mirror"] / rate["simpleitk"], 2),
            "mirror_vs_limit": round(rate["mirror"] / rate["limit"], 2),
        }
        if not table:
            continue
        update_row(
            f"convert {label} {n}x{args.size}^2 CT", "slices/s",
            [f"{rate['mirror']:.0f}", f"{rate['limit']:.0f} (decode+blosc)",
             f"dcm2niix {rate['dcm2niix']:.0f}, SimpleITK {rate['simpleitk']:.0f}",
             f"{rate['mirror'] / rate['dcm2niix']:.2f}x dcm2niix, "
             f"{rate['mirror'] / rate['limit']:.2f} of limit"],
        )  # fmt: skip
    load = os.getloadavg()
    if not table:
        print(summary)
        return
    import imagecodecs

    path = write_result("convert", {
        "settings": {"slices": n, "size": args.size, "reps": args.reps, "threads": THREADS,
                     "codec": f"blosc zstd clevel {BLOSC_CLEVEL} bitshuffle, 64^3 chunks, "
                              "(64,Y,X) shards",
                     "clevel_choice": clevels,
                     "decoders": {"uncompressed": "native (readinto at the scanned offset)",
                                  "j2k": f"imagecodecs {imagecodecs.__version__} "
                                         f"({imagecodecs.jpeg2k_version()})"},
                     "pyramid_levels": 3},
        "samples_s": results, "summary": summary,
        "load_average_before": load_before,
        "load_average_at_end": [round(x, 2) for x in load],
        "note": "2 shared vCPUs; other engineers' jobs may be running (see load averages)",
    })  # fmt: skip
    print(path)
    for label, data in summary.items():
        print(label, data)


if __name__ == "__main__":
    main()
