"""A faithful simulated NBIA v4 archive: real DICOM, real HTTP, injectable faults.

Usage::

    from mirror.archive.sim import FaultConfig, build_preset, serve_archive

    sim = build_preset("tiny", seed=0)
    with serve_archive(sim) as server:
        server.base_url  # http://127.0.0.1:<port>/nbia-api/services/v4/
"""

from __future__ import annotations

from mirror.archive.sim.faults import FaultConfig
from mirror.archive.sim.model import SimArchive
from mirror.archive.sim.presets import build_preset
from mirror.archive.sim.server import SimServer, serve_archive, start_server

__all__ = [
    "FaultConfig",
    "SimArchive",
    "SimServer",
    "build_preset",
    "serve_archive",
    "start_server",
]
