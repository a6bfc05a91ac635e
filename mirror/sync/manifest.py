"""``.tcia`` manifests (nbia-api.md §7): read NBIA's format or a plain UID list; write NBIA's.

NBIA writes six ``key=value`` header lines, the last being ``ListOfSeriesToDownload=``, then one
SeriesInstanceUID per line. Readers in the wild also accept bare UID lists, blank lines and
``#`` comments, so we do too; anything else is rejected rather than guessed at.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mirror.errors import IntegrityError, ManifestError
from mirror.layout import check_uid

MANIFEST_VERSION = "3.0"
DEFAULT_DOWNLOAD_SERVER = (
    "https://nbia.cancerimagingarchive.net/nbia-download/servlet/DownloadServlet"
)
_LIST_KEY = "ListOfSeriesToDownload"
_MAX_BYTES = 64 * 1024 * 1024


def parse_manifest(text: str, *, source: str = "<manifest>") -> list[str]:
    """SeriesInstanceUIDs in file order, duplicates dropped; ManifestError if malformed."""
    uids: dict[str, None] = {}
    in_header = "=" in text.split("\n", 1)[0]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if in_header:
            in_header = _header_line(line, number, source)
            continue
        uids.setdefault(_uid_line(line, number, source), None)
    if in_header:
        raise ManifestError(f"{source}: header has no {_LIST_KEY}= line")
    if not uids:
        raise ManifestError(f"{source}: no SeriesInstanceUIDs")
    return list(uids)


def _header_line(line: str, number: int, source: str) -> bool:
    """Return whether the header continues after this line."""
    key, sep, _ = line.partition("=")
    if not sep or not key.strip():
        raise ManifestError(f"{source}:{number}: expected key=value in the header: {line[:80]!r}")
    return key.strip() != _LIST_KEY


def _uid_line(line: str, number: int, source: str) -> str:
    try:
        return check_uid(line)
    except IntegrityError as exc:
        raise ManifestError(f"{source}:{number}: not a SeriesInstanceUID: {line[:80]!r}") from exc


def read_manifest(path: str | Path) -> list[str]:
    target = Path(path)
    try:
        if target.stat().st_size > _MAX_BYTES:
            raise ManifestError(f"{target}: larger than {_MAX_BYTES} bytes")
        text = target.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{target}: not UTF-8 text") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {target}: {exc.strerror or exc}") from exc
    return parse_manifest(text, source=str(target))


def format_manifest(
    uids: Iterable[str],
    *,
    basket_id: str = "manifest.tcia",
    download_server_url: str = DEFAULT_DOWNLOAD_SERVER,
    include_annotation: bool = False,
) -> str:
    """NBIA's manifest text (``noOfrRetry`` is misspelt on purpose: that is the format)."""
    checked = [_uid_line(uid.strip(), i, "<uids>") for i, uid in enumerate(uids, start=1)]
    header = [
        f"downloadServerUrl={download_server_url}",
        f"includeAnnotation={'true' if include_annotation else 'false'}",
        "noOfrRetry=4",
        f"databasketId={basket_id}",
        f"manifestVersion={MANIFEST_VERSION}",
        f"{_LIST_KEY}=",
    ]
    return "\n".join([*header, *checked]) + "\n"


def write_manifest(uids: Iterable[str], path: str | Path, **options: object) -> Path:
    """Write a ``.tcia`` file atomically (temp file in the same folder, then rename)."""
    target = Path(path)
    text = format_manifest(uids, basket_id=target.name, **options)  # type: ignore[arg-type]
    write_text_atomic(target, text)
    return target


def write_text_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
