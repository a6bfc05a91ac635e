"""Build the source ``mirror sync --source nbia|idc|auto`` names (the composition root for
sources: the CLI calls this, the engine only ever sees the port)."""

from __future__ import annotations

from typing import Literal

from mirror.archive.port import Source

SourceChoice = Literal["nbia", "idc", "auto"]
SOURCES: tuple[SourceChoice, ...] = ("nbia", "idc", "auto")


def open_source(
    choice: str,
    archive_url: str,
    *,
    idc_index: str | None = None,
    idc_endpoint: str | None = None,
    connections: int = 16,
) -> Source:
    """``nbia``: the NBIA v4 API at ``archive_url``; ``idc``: IDC's release index
    (``idc_index`` DIR or URL, default the installed idc-index-data) and buckets
    (``idc_endpoint``, else ``$MIRROR_IDC_ENDPOINT``, else AWS); ``auto``: both, IDC first.
    ``connections``: NBIA connections kept open per process, at least the downloads one
    worker runs at once (a smaller pool discards a connection after every extra download,
    and the next one pays a new TCP and TLS handshake)."""
    from mirror.errors import UsageError

    if choice not in SOURCES:
        raise UsageError(f"--source must be one of {', '.join(SOURCES)}, not {choice!r}")
    if choice == "nbia":
        return _nbia(archive_url, connections)
    from mirror.archive.idc import IdcArchive

    idc = IdcArchive(idc_index, endpoint=idc_endpoint)
    if choice == "idc":
        return idc
    from mirror.archive.combined import CombinedSource

    return CombinedSource(_nbia(archive_url, connections), idc)


def _nbia(url: str, connections: int) -> Source:
    from mirror.archive.nbia import NbiaArchive

    return NbiaArchive(url, max_connections=connections)


__all__ = ["SOURCES", "SourceChoice", "open_source"]
