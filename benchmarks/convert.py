"""DICOM -> OME-Zarr conversion speed: mirror against the same work done bare, and its peers.

One run, one machine: a synthetic 300-slice 512x512 CT (realistic value mix: -2000 padding
outside the field of view, air, lung, soft tissue with noise, bone), once uncompressed and
once JPEG 2000 lossless. Every repetition of every contender runs inside
``_common.load_round`` (1-minute load before and after; a round starting above 1.5 waits,
bounded, or is marked). Wall time and CPU time (user + system, all threads) are recorded, so
multi-threaded and single-threaded contenders also compare per CPU-second.

* ``mirror``: ``convert_series`` on a laid-out destination (what ``mirror convert`` runs per
  series) with its default 2 threads: header scan, assembly, decode, modality LUT, sharded
  OME-Zarr level 0 + 2 pyramid levels (blosc zstd), metadata. ``mirror-1t``: the same on one
  thread, the resources single-threaded dcm2niix has.
* ``limit``: the same output done bare, in a pool of mirror's 2 threads, phase by phase
  (each phase timed and kept in the JSON): header scan of every file; decode (mirror's own
  decoder: pixel bytes read where the scan located them, imagecodecs for JPEG 2000); blosc of
  the level-0 64^3 chunks with mirror's settings (extra: compression); 2x2 downsampling to
  levels 1 and 2 and their blosc (extra: pyramid); writing every level's compressed chunks, one
  file per 64-slice shard. No zarr, no metadata. Beside it, ``decode + write raw``: scan +
  decode + level 0 written uncompressed (the least any converter does for these voxels).
* ``dcm2niix -z n`` (uncompressed NIfTI, no pyramid) and ``dcm2niix -z y`` (gzip NIfTI, its
  built-in zlib unless pigz is on PATH, which the JSON records); single-threaded.
* SimpleITK ``ImageSeriesReader`` (GDCM): read only; read + write ``.nii``; read + write
  ``.nii.gz``.

The JSON also records each contender's output bytes and the blosc clevel measurement behind
mirror's choice (zstd + bitshuffle, clevel 1 vs 3: single-thread encode MB/s and ratio).

Usage: ``python benchmarks/convert.py [--slices 300] [--size 512] [--workdir DIR] [--reps 3]``
Needs the ``bench`` extra (dcm2niix, SimpleITK).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_round, median, update_row, write_result

from mirror.convert import direct, ngff
from mirror.convert.pipeline import DEFAULT_OUT_PREFIX, convert_series
from mirror.convert.scan import SliceHeader, scan_instance
from mirror.convert.values import stored_dtype
from mirror.convert.write import BLOSC_CLEVEL
from mirror.layout import SIDECAR_NAME, InstanceEntry, SeriesSidecar, series_path
from mirror.storage import open_store

THREADS = 2  # convert_series' default
_EXE = Path(sys.executable).with_name("dcm2niix")  # the pip wheel's binary, in the venv
DCM2NIIX = str(_EXE) if _EXE.exists() else "dcm2niix"
LEVELS = 3  # level 0 + 2 pyramid levels, as mirror writes a 512^2 series


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of ``fn()``."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    out = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, out


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


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
    path = series_path(
        collection="BENCH",
        patient_id="BENCH",
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
    )
    entries = []
    for f in files:
        data = f.read_bytes()
        store.put_bytes(f"{path}/{f.name}", data)
        entries.append(InstanceEntry(f.name, hashlib.md5(data).hexdigest(), len(data)))
    sidecar = SeriesSidecar(
        series_uid=first.SeriesInstanceUID,
        study_uid=first.StudyInstanceUID,
        patient_id="BENCH",
        collection="BENCH",
        modality="CT",
        path=path,
        instances=tuple(entries),
        fingerprint=(len(entries), 0, "", ""),
        series_version=1,
        run_id="bench",
        synced_at="2026-01-01T00:00:00+00:00",
        tool_version="bench",
    )
    store.put_bytes(f"{path}/{SIDECAR_NAME}", sidecar.to_json())
    return sidecar


def warm(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            f.read_bytes()


# --- contenders: each returns the bytes it wrote --------------------------------------------


def run_mirror(dest: Path, sidecar: SeriesSidecar, threads: int) -> int:
    store = open_store(str(dest))
    result = convert_series(store, sidecar, force=True, threads=threads)
    assert result.status == "converted" and result.written_stacks == 1, result
    return tree_bytes(dest / DEFAULT_OUT_PREFIX)


def run_dcm2niix(folder: Path, out: Path, gzip: bool) -> int:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    flag = "y" if gzip else "n"
    subprocess.run([DCM2NIIX, "-z", flag, "-f", "%s", "-o", str(out), str(folder)],
                   check=True, capture_output=True)  # fmt: skip
    return tree_bytes(out)


def run_sitk(folder: Path, out: Path | None) -> int:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert image.GetSize()[2] > 0
    if out is None:
        return 0
    out.unlink(missing_ok=True)
    sitk.WriteImage(image, str(out))
    return out.stat().st_size


# --- the bare loop of the same work ---------------------------------------------------------


def _codec(clevel: int) -> Any:
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=clevel, shuffle=Blosc.BITSHUFFLE, typesize=2)


def _chunks(volume: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(shard index, bytes) of every 64^3 chunk, C order, as zarr hands them to blosc."""
    def flat(block: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(block).reshape(-1).view(np.uint8)

    return [
        (z // 64, flat(volume[z:z + 64, y:y + 64, x:x + 64]))
        for z in range(0, volume.shape[0], 64)
        for y in range(0, volume.shape[1], 64)
        for x in range(0, volume.shape[2], 64)
    ]  # fmt: skip


def scan_headers(folder: Path, pool: ThreadPoolExecutor) -> list[SliceHeader]:
    def one(f: Path) -> list[SliceHeader]:
        with open(f, "rb") as fp:
            found = scan_instance(f.name, fp)
        assert isinstance(found, list) and all(direct.supported(h) for h in found), f
        return found

    headers = [h for found in pool.map(one, sorted(folder.iterdir())) for h in found]
    return sorted(headers, key=lambda h: h.name)


def decode_all(folder: Path, headers: list[SliceHeader], pool: ThreadPoolExecutor) -> np.ndarray:
    first = headers[0]
    volume = np.empty((len(headers), first.rows, first.cols), dtype=stored_dtype(first))

    def one(k: int) -> None:
        with open(folder / headers[k].name, "rb") as fp:
            assert direct.read_file(fp, [(headers[k], volume[k])]), headers[k].name

    list(pool.map(one, range(len(headers))))
    return volume


def write_shards(out: Path, level: int, encoded: list[tuple[int, bytes]]) -> int:
    """Concatenate each shard's chunks into one file (as a sharded zarr array does)."""
    by_shard: dict[int, list[bytes]] = {}
    for shard, blob in encoded:
        by_shard.setdefault(shard, []).append(blob)
    total = 0
    for shard, blobs in by_shard.items():
        path = out / f"s{level}" / str(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(blobs))
        total += path.stat().st_size
    return total


def run_limit(folder: Path, out: Path) -> dict[str, dict[str, float]]:
    """Phase by phase, each in a pool of THREADS: {phase: {"wall": s, "cpu": s}}."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    codec = _codec(BLOSC_CLEVEL)
    phases: dict[str, dict[str, float]] = {}

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        wall, cpu, result = measured(fn)
        phases[name] = {"wall": wall, "cpu": cpu}
        return result

    def encode(chunks: list[tuple[int, np.ndarray]]) -> list[tuple[int, bytes]]:
        return list(pool.map(lambda c: (c[0], codec.encode(c[1])), chunks))

    def pyramid(volume: np.ndarray) -> list[list[tuple[int, bytes]]]:
        levels = [volume]
        while len(levels) < LEVELS:
            levels.append(ngff.downsample(levels[-1], "mean"))
        return [encode(_chunks(level)) for level in levels[1:]]

    def write_raw(volume: np.ndarray) -> int:
        def one(z: int) -> int:
            path = out / "raw" / str(z // 64)
            path.parent.mkdir(parents=True, exist_ok=True)
            volume[z:z + 64].tofile(path)  # fmt: skip
            return path.stat().st_size

        return sum(pool.map(one, range(0, volume.shape[0], 64)))

    with ThreadPoolExecutor(THREADS) as pool:
        headers = phase("scan", lambda: scan_headers(folder, pool))
        volume = phase("decode", lambda: decode_all(folder, headers, pool))
        raw_bytes = phase("write_raw_level0", lambda: write_raw(volume))
        level0 = phase("blosc_level0", lambda: encode(_chunks(volume)))
        upper = phase("pyramid", lambda: pyramid(volume))
        written = phase("write_compressed", lambda: sum(
            write_shards(out, i, enc) for i, enc in enumerate([level0, *upper])))  # fmt: skip
    phases["bytes"] = {"raw_level0": raw_bytes, "compressed_all_levels": written}
    phases["_volume"] = volume  # type: ignore[assignment]  # for the clevel measurement
    return phases


SAME_OUTPUT = ("scan", "decode", "blosc_level0", "pyramid", "write_compressed")
RAW_OUTPUT = ("scan", "decode", "write_raw_level0")


def clevel_choice(volume: np.ndarray) -> dict[str, dict[str, float]]:
    """zstd+bitshuffle clevel 1 vs 3 on the same chunks: one thread, best of 3."""
    chunks = [c for _, c in _chunks(volume)]
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


# --- driver ---------------------------------------------------------------------------------

CONTENDERS = ("mirror", "mirror-1t", "limit", "dcm2niix-z-n", "dcm2niix-z-y", "sitk-read",
              "sitk-nii", "sitk-nii.gz")  # fmt: skip


def one_rep(
    name: str, folder: Path, dest: Path, sidecar: SeriesSidecar, work: Path
) -> tuple[float, float, Any]:
    if name == "mirror":
        return measured(lambda: run_mirror(dest, sidecar, THREADS))
    if name == "mirror-1t":
        return measured(lambda: run_mirror(dest, sidecar, 1))
    if name == "limit":
        return measured(lambda: run_limit(folder, work / "limit-out"))
    if name.startswith("dcm2niix"):
        return measured(lambda: run_dcm2niix(folder, work / "nii", name.endswith("y")))
    out = {"sitk-read": None, "sitk-nii": work / "sitk.nii", "sitk-nii.gz": work / "sitk.nii.gz"}
    return measured(lambda: run_sitk(folder, out[name]))


def run_input(label: str, syntax: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
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
    wall: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    cpu: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    out_bytes: dict[str, int] = {}
    phases: list[dict[str, dict[str, float]]] = []
    volume = None
    for rep in range(args.reps):
        for name in CONTENDERS:
            with load_round(f"{label} {name} rep {rep + 1}"):
                w, c, got = one_rep(name, folder, dest, sidecar, work)
            wall[name].append(w)
            cpu[name].append(c)
            if name == "limit":
                volume = got.pop("_volume")
                phases.append(got)
                got = got["bytes"]["compressed_all_levels"]
            out_bytes[name] = int(got)
        print(label, rep, {k: round(v[-1], 3) for k, v in wall.items()}, flush=True)
    assert volume is not None
    return {"wall_s": wall, "cpu_s": cpu, "output_bytes": out_bytes, "limit_phases": phases,
            "clevel_choice": clevel_choice(volume)}  # fmt: skip


def summarise(n: int, data: dict[str, Any]) -> dict[str, Any]:
    wall = {k: median(v) for k, v in data["wall_s"].items()}
    cpu = {k: median(v) for k, v in data["cpu_s"].items()}
    phase = {
        p: median([r[p]["wall"] for r in data["limit_phases"]]) for p in SAME_OUTPUT + RAW_OUTPUT
    }
    wall["limit"] = sum(phase[p] for p in SAME_OUTPUT)  # the phases, not the harness around them
    wall["decode+write-raw"] = sum(phase[p] for p in RAW_OUTPUT)
    wall["decode"] = phase["scan"] + phase["decode"]
    rate = {k: n / v for k, v in wall.items()}
    per_cpu = {k: n / v for k, v in cpu.items() if v > 0}
    return {
        "slices_per_s": rate, "slices_per_cpu_s": per_cpu, "cores_used": {
            k: cpu[k] / wall[k] for k in cpu if k in wall},
        "limit_phase_s": phase,
        "extras_s": {"compression (blosc level 0)": phase["blosc_level0"],
                     "pyramid (downsample + blosc levels 1-2)": phase["pyramid"]},
        "mirror_to_limit": rate["mirror"] / rate["limit"],
        "mirror_to_dcm2niix_z_n": rate["mirror"] / rate["dcm2niix-z-n"],
        "mirror_to_dcm2niix_z_y": rate["mirror"] / rate["dcm2niix-z-y"],
        "mirror_1t_to_dcm2niix_z_y": rate["mirror-1t"] / rate["dcm2niix-z-y"],
        "mirror_per_cpu_s_to_dcm2niix_z_y": per_cpu["mirror"] / per_cpu["dcm2niix-z-y"],
    }  # fmt: skip


def rows(label: str, n: int, size: int, s: dict[str, Any], out_bytes: dict[str, int]) -> None:
    r, pc, ph = s["slices_per_s"], s["slices_per_cpu_s"], s["limit_phase_s"]
    mb = {k: v / 1e6 for k, v in out_bytes.items()}
    bench = f"convert {label} {n}x{size}^2 CT"
    limit = (f"{r['limit']:.0f} same output done bare (scan + decode + blosc + 3-level pyramid + "
             f"write, {THREADS} threads), of which compression {ph['blosc_level0']:.2f} s, pyramid "
             f"{ph['pyramid']:.2f} s; decode + write raw level 0: {r['decode+write-raw']:.0f}; "
             f"scan + decode alone: {r['decode']:.0f}")  # fmt: skip
    peers = (f"dcm2niix (1 thread) -z n {r['dcm2niix-z-n']:.0f} ({mb['dcm2niix-z-n']:.0f} MB), "
             f"-z y {r['dcm2niix-z-y']:.0f} ({mb['dcm2niix-z-y']:.0f} MB); SimpleITK read "
             f"{r['sitk-read']:.0f}, read + .nii {r['sitk-nii']:.0f}, read + .nii.gz "
             f"{r['sitk-nii.gz']:.0f}")  # fmt: skip
    update_row(bench, f"slices/s, mirror {THREADS} threads (default)", [
        f"{r['mirror']:.0f} ({mb['mirror']:.0f} MB, 3 levels)", limit, peers,
        f"{s['mirror_to_limit']:.2f} of limit; {s['mirror_to_dcm2niix_z_n']:.2f}x dcm2niix -z n, "
        f"{s['mirror_to_dcm2niix_z_y']:.2f}x -z y; {r['mirror'] / r['sitk-nii.gz']:.2f}x SimpleITK "
        "read + .nii.gz"])  # fmt: skip
    update_row(bench, "slices/s at equal resources: mirror 1 thread; slices per CPU-second", [
        f"{r['mirror-1t']:.0f} (1 thread); {pc['mirror']:.0f} per CPU-s at {THREADS} threads",
        f"{pc['limit']:.0f} per CPU-s (same output done bare)",
        f"dcm2niix -z n {pc['dcm2niix-z-n']:.0f}, -z y {pc['dcm2niix-z-y']:.0f} per CPU-s; "
        f"SimpleITK read + .nii.gz {pc['sitk-nii.gz']:.0f} per CPU-s",
        f"1 thread: {s['mirror_1t_to_dcm2niix_z_y']:.2f}x dcm2niix -z y; per CPU-s: "
        f"{s['mirror_per_cpu_s_to_dcm2niix_z_y']:.2f}x dcm2niix -z y, "
        f"{pc['mirror'] / pc['limit']:.2f} of limit"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/mirror-bench-convert")
    parser.add_argument("--only", choices=["uncompressed", "j2k"], default=None)
    args = parser.parse_args()
    work = Path(args.workdir)
    import SimpleITK  # noqa: F401  (imported once here, so no contender's clock includes it)

    inputs = {"uncompressed": ExplicitVRLittleEndian, "j2k": JPEG2000Lossless}
    results = {label: run_input(label, syntax, args, work)
               for label, syntax in inputs.items() if args.only in (None, label)}  # fmt: skip
    summary = {label: summarise(args.slices, data) for label, data in results.items()}
    import imagecodecs

    path = write_result("convert", {
        "settings": {"slices": args.slices, "size": args.size, "reps": args.reps,
                     "threads": THREADS, "pyramid_levels": LEVELS,
                     "codec": f"blosc zstd clevel {BLOSC_CLEVEL} bitshuffle, 64^3 chunks, "
                              "(64,Y,X) shards",
                     "decoders": {"uncompressed": "native (readinto at the scanned offset)",
                                  "j2k": f"imagecodecs {imagecodecs.__version__} "
                                         f"({imagecodecs.jpeg2k_version()})"},
                     "dcm2niix": dcm2niix_version(), "pigz_on_path": shutil.which("pigz"),
                     "simpleitk": sitk_version()},
        "samples": results, "summary": summary,
    })  # fmt: skip
    for label, s in summary.items():
        rows(label, args.slices, args.size, s, results[label]["output_bytes"])
    print(path)
    for label, s in summary.items():
        print(label, {k: round(v, 1) for k, v in s["slices_per_s"].items()})


def dcm2niix_version() -> str:
    out = subprocess.run([DCM2NIIX, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).strip().splitlines()[-1]


def sitk_version() -> str:
    import SimpleITK as sitk

    return str(sitk.Version_VersionString())


if __name__ == "__main__":
    main()
