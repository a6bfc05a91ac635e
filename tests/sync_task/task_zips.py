"""Literal series ZIPs in the archive's format (nbia-api.md §5.11/§5.12) and a fake Archive."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from mirror.archive.nbiazip import ZipSeriesSource
from mirror.archive.port import SeriesRecord

STUDY = "1.2.3.4"
LICENSE_TEXT = b"License Information. The TEST collection is distributed under CC BY 4.0.\n"


def instance_bytes(series_uid: str, n: int, size: int = 300) -> bytes:
    """Deterministic fake DICOM-ish payload for instance ``n`` of a series."""
    seed = hashlib.sha256(f"{series_uid}/{n}".encode()).digest()
    return (b"DICM" + seed * (size // 32 + 1))[:size]


def series_files(series_uid: str, count: int = 3, size: int = 300) -> dict[str, bytes]:
    return {f"{i:08d}.dcm": instance_bytes(series_uid, i, size + i) for i in range(1, count + 1)}


def md5_rows(files: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(name, hashlib.md5(data).hexdigest()) for name, data in files.items()]


def csv_text(rows: list[tuple[str, str]], header: str = "Filename,MD5Hash", seed: int = 7) -> bytes:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)  # upstream rows come in HashMap order
    return ("\n".join([header, *(f"{n},{m}" for n, m in shuffled)]) + "\n").encode()


def build_zip(
    files: dict[str, bytes],
    *,
    license_text: bytes | None = LICENSE_TEXT,
    csv: bytes | None = None,
    extra: list[tuple[zipfile.ZipInfo, bytes]] | None = None,
) -> bytes:
    """LICENSE first, instances, md5hashes.csv last (computed unless ``csv`` is given)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if license_text is not None:
            zf.writestr("LICENSE", license_text)
        for name, data in files.items():
            zf.writestr(name, data)
        for info, data in extra or []:
            zf.writestr(info, data)
        zf.writestr("md5hashes.csv", csv if csv is not None else csv_text(md5_rows(files)))
    return buf.getvalue()


def record_for(
    series_uid: str, files: dict[str, bytes], *, released: date = date(2024, 1, 2), **kw: object
) -> SeriesRecord:
    return SeriesRecord(
        series_uid=series_uid,
        study_uid=STUDY,
        patient_id="P-1",
        collection="TEST",
        modality="CT",
        image_count=len(files),
        file_size=sum(len(d) for d in files.values()),
        date_released=released,
        license_name="CC BY 4.0",
        license_uri="https://creativecommons.org/licenses/by/4.0/",
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class FakeArchive(ZipSeriesSource):
    """Serves queued responses per series: ZIP bytes (chunked) or an exception to raise."""

    responses: dict[str, list[bytes | BaseException]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    chunk: int = 1000

    @property
    def url(self) -> str:
        return "fake://archive"

    def queue(self, series_uid: str, *responses: bytes | BaseException) -> None:
        self.responses.setdefault(series_uid, []).extend(responses)

    @contextmanager
    def stream_series(self, series_uid: str) -> Iterator[Iterator[bytes]]:
        self.calls.append(series_uid)
        queue = self.responses[series_uid]
        # The last queued response repeats, so "always wrong" needs one entry.
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        yield (item[i : i + self.chunk] for i in range(0, len(item), self.chunk))
