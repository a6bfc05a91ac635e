"""Peak memory while one very large series (about 2 GB of DICOM) streams from the archive.

The simulated archive runs as ``mirror archive serve`` in its own process with one extra
series (``--slices`` CT slices of 512x512, about 525 kB each). A separate client process
streams it through ``NbiaArchive.stream_series`` into a scratch file; we record the
client's and the server's peak RSS (Linux ``VmHWM``) and the client's RSS before the
download (the floor: interpreter plus imports). Optionally the peer, tcia-utils 3.3.5
``downloadSeries(as_zip=True)``, fetches the same series in its own process (it holds the
whole ZIP in memory). Results: ``benchmarks/results/archive_stream_memory.json`` and one
row in ``benchmarks/README.md``.

    python benchmarks/archive_stream_memory.py [--slices 4000] [--runs 3] [--peer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, rounds, update_row, write_result

NAME = "archive_stream_memory"
MB = 1024 * 1024


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a live process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(slices: int, level: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable, "-c", "from mirror.cli import main; main()", "-q", "archive", "serve",
        "--preset", "tiny",
        "--port", "0", "--compresslevel", str(level), "--series", f"BIG:BIG-1:CT:{slices}:512",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"archive did not start: {url!r}")
    return proc, url


def client_main(url: str, out: str) -> None:
    """Child process: stream the BIG series to ``out``, print JSON facts."""
    from mirror.archive.nbia import NbiaArchive

    archive = NbiaArchive(url, read_timeout=600)
    record = archive.series("BIG")[0]
    floor = vm_hwm(os.getpid())
    started = time.perf_counter()
    size = 0
    with archive.stream_series(record.series_uid) as chunks, open(out, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            size += len(chunk)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "floor": floor, "peak": vm_hwm(os.getpid()), "zip_bytes": size, "seconds": seconds,
        "file_size": record.file_size, "image_count": record.image_count,
        "series_uid": record.series_uid,
    }))  # fmt: skip


def peer_main(url: str, uid: str, folder: str) -> None:
    """Child process: tcia-utils downloads the same series (whole ZIP in memory)."""
    from tcia_utils import nbia

    nbia.setApiUrl = lambda endpoint, api_url="": url
    started = time.perf_counter()
    nbia.downloadSeries([uid], input_type="list", path=folder, as_zip=True, max_workers=1)
    seconds = time.perf_counter() - started
    print(json.dumps({"peak": vm_hwm(os.getpid()), "seconds": seconds}))


def run_child(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def check_zip(path: Path, expected: int) -> None:
    with zipfile.ZipFile(path) as zf:
        images = [n for n in zf.namelist() if n.endswith(".dcm")]
        if len(images) != expected or zf.namelist()[-1] != "md5hashes.csv":
            raise RuntimeError(f"bad zip: {len(images)} images, expected {expected}")


def one_run(slices: int, level: int, peer: bool, scratch: Path) -> dict[str, float]:
    server, url = start_server(slices, level)
    try:
        target = scratch / "series.zip"
        client = run_child(["--client", url, str(target)])
        check_zip(target, slices)
        target.unlink()
        sample = {**client, "server_peak": vm_hwm(server.pid)}
        if peer:
            got = run_child(["--peer-child", url, str(client["series_uid"]), str(scratch)])
            sample["peer_peak"], sample["peer_seconds"] = got["peak"], got["seconds"]
            for leftover in scratch.glob("*.zip"):
                leftover.unlink()
        return sample
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compresslevel", type=int, default=1)
    parser.add_argument("--peer", action="store_true", help="also measure tcia-utils")
    parser.add_argument("--scratch", default=None)
    args = parser.parse_args()
    samples = []
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        for i in rounds(args.runs, "stream"):
            samples.append(one_run(args.slices, args.compresslevel, args.peer, Path(tmp)))
            print(f"run {i + 1}: {json.dumps(samples[-1])}", file=sys.stderr)
    report(args, samples)


def report(args: argparse.Namespace, samples: list[dict[str, float]]) -> None:
    def med(key: str) -> float:
        return median([s[key] for s in samples if key in s])

    summary = {
        "client_peak_mb": med("peak") / MB,
        "client_floor_mb": med("floor") / MB,
        "client_growth_mb": median([(s["peak"] - s["floor"]) / MB for s in samples]),
        "server_peak_mb": med("server_peak") / MB,
        "series_file_size_mb": med("file_size") / MB,
        "zip_mb": med("zip_bytes") / MB,
        "client_mb_per_s": median([s["zip_bytes"] / MB / s["seconds"] for s in samples]),
        "peer_peak_mb": med("peer_peak") / MB if args.peer else None,
    }
    settings = {
        "slices": args.slices,
        "matrix": "512x512",
        "compresslevel": args.compresslevel,
        "runs": args.runs,
        "peer": "tcia-utils 3.3.5 downloadSeries(as_zip=True)",
    }
    path = write_result(NAME, {"settings": settings, "summary": summary, "samples": samples})
    peer = summary["peer_peak_mb"]
    update_row(NAME, "peak RSS streaming one series (MB)", [
        f"{summary['client_peak_mb']:.0f} client / {summary['server_peak_mb']:.0f} server "
        f"({summary['series_file_size_mb']:.0f} MB series)",
        f"{summary['client_floor_mb']:.0f} (client before download)",
        f"{peer:.0f}" if peer else "not run",
        f"{summary['client_peak_mb'] / peer:.3f}" if peer else "-",
    ])  # fmt: skip
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--peer-child":
        peer_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
