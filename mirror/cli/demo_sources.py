"""The simulated sources ``mirror demo --source nbia|idc|auto`` mirrors (composition root).

``nbia``: the simulated NBIA v4 API on 127.0.0.1; ``idc``: the same series as a simulated
IDC release (moto's S3 server on 127.0.0.1 holding a bucket in IDC's layout, plus the
release's Parquet index); ``auto``: both, IDC first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from mirror.archive.port import Source


@dataclass(frozen=True, slots=True)
class SimulatedSource:
    source: Source
    url: str  # what the demo prints: the NBIA base URL and/or the S3 endpoint
    today: date  # the simulated archive's calendar (the watermark follows it)


@contextmanager
def simulated_source(kind: str, preset: str, seed: int = 0) -> Iterator[SimulatedSource]:
    from mirror.archive.sim import build_preset
    from mirror.errors import UsageError

    if kind not in ("nbia", "idc", "auto"):
        raise UsageError(f"--source must be nbia, idc or auto, not {kind!r}")
    sim = build_preset(preset, seed=seed)
    with ExitStack() as stack:
        urls: list[str] = []
        nbia = _nbia(stack, sim, urls) if kind in ("nbia", "auto") else None
        idc = _idc(stack, sim, urls) if kind in ("idc", "auto") else None
        yield SimulatedSource(_combine(nbia, idc), " + ".join(urls), sim.today)


def _nbia(stack: ExitStack, sim: object, urls: list[str]) -> Source:
    from mirror.archive.nbia import NbiaArchive
    from mirror.archive.sim import SimArchive, serve_archive

    assert isinstance(sim, SimArchive)
    server = stack.enter_context(serve_archive(sim, host="127.0.0.1", port=0))
    urls.append(server.base_url)
    archive = NbiaArchive(server.base_url)
    stack.callback(archive.close)
    return archive


def _idc(stack: ExitStack, sim: object, urls: list[str]) -> Source:
    from mirror.archive.idc import IdcArchive
    from mirror.archive.idcsim import simulated_idc
    from mirror.archive.sim import SimArchive

    assert isinstance(sim, SimArchive)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mirror-demo-idc-")))
    running = stack.enter_context(simulated_idc(sim, work))
    urls.append(f"{running.endpoint} (simulated IDC, release {running.first.version})")
    return IdcArchive(str(running.first.index_dir), endpoint=running.endpoint, env={})


def _combine(nbia: Source | None, idc: Source | None) -> Source:
    if nbia is not None and idc is not None:
        from mirror.archive.combined import CombinedSource
        from mirror.archive.idc import IdcArchive

        assert isinstance(idc, IdcArchive)
        return CombinedSource(nbia, idc)
    chosen = nbia or idc
    assert chosen is not None
    return chosen


__all__ = ["SimulatedSource", "simulated_source"]
