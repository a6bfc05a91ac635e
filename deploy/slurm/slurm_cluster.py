"""Run one ``mirror sync`` against Dask workers submitted as SLURM jobs (dask-jobqueue).

The scheduler lives in this process (on the node running sync.sbatch or a service node);
workers are batch jobs that connect back to it.  ``mirror sync`` itself runs as a child
process with ``--scheduler <address>`` so its exit code (0 ok, 1 partial, 3 archive down,
4 destination, 5 verify, 6 safety abort, 75 lock held, 130 interrupted) is this script's
exit code, which is what cron/SLURM accounting and the alerts look at.

    python deploy/slurm/slurm_cluster.py --workers 4 -- --dest /project/tcia

Needs ``pip install ".[hpc]"`` (dask-jobqueue).  Settings come from jobqueue.yaml
(``jobqueue.slurm``); the keyword arguments below override them.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("tcia_mirror.slurm")

#: Worker job shape tuned for network-bound downloads (see deploy/README.md, sizing).
WORKER_DEFAULTS: dict[str, Any] = {
    "cores": 8,
    "processes": 1,
    "memory": "16GiB",
    "walltime": "24:00:00",
    "worker_extra_args": ["--resources", "tcia_http=8"],
}
WORKER_DEFAULTS_KEYS = tuple(key.replace("_", "-") for key in WORKER_DEFAULTS)


def make_cluster(**overrides: Any) -> Any:
    """A SLURMCluster whose workers advertise the ``tcia_http`` resource; submits nothing yet.

    Precedence: keyword overrides, then what the site set in ``jobqueue.slurm`` (e.g. from
    jobqueue.yaml), then WORKER_DEFAULTS where the site kept dask-jobqueue's own default
    (whose 30-minute walltime and unset cores would not do for a mirror).
    """
    from dask_jobqueue.slurm import SLURMCluster

    site = site_settings()
    return SLURMCluster(**{**WORKER_DEFAULTS, **site, **overrides})


def site_settings() -> dict[str, Any]:
    """``jobqueue.slurm`` settings that differ from dask-jobqueue's shipped defaults."""
    from pathlib import Path

    import dask.config
    import dask_jobqueue
    import yaml  # type: ignore[import-untyped]

    shipped = Path(dask_jobqueue.__file__).with_name("jobqueue.yaml")
    defaults = yaml.safe_load(shipped.read_text())["jobqueue"]["slurm"]
    current = dask.config.get("jobqueue.slurm", {})
    keys = {key.replace("-", "_"): key for key in WORKER_DEFAULTS_KEYS}
    return {
        arg: current[key]
        for arg, key in keys.items()
        if key in current and current[key] != defaults.get(key)
    }


def sync_command(scheduler: str, sync_args: Sequence[str]) -> list[str]:
    """The driver command line: ``mirror sync`` attached to this cluster's scheduler."""
    return ["mirror", "sync", "--scheduler", scheduler, *sync_args]


def run_sync(
    n_workers: int, sync_args: Sequence[str], wait_timeout: float = 3600, **overrides: Any
) -> int:
    """Start the cluster, run one sync to completion, always release the worker jobs."""
    cluster = make_cluster(**overrides)
    try:
        cluster.scale(jobs=n_workers)
        log.info("scheduler %s, %d worker jobs requested", cluster.scheduler_address, n_workers)
        # `mirror sync` turns per-worker download caps on only if the workers it sees at
        # connect time advertise tcia_http: wait until the first worker job has started.
        cluster.wait_for_workers(1, timeout=wait_timeout)
        cmd = sync_command(cluster.scheduler_address, sync_args)
        return subprocess.run(cmd, check=False).returncode
    finally:
        cluster.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="number of worker jobs")
    parser.add_argument("--queue", default=None, help="SLURM partition (nodes with egress)")
    parser.add_argument("--account", default=None, help="SLURM account")
    parser.add_argument(
        "--wait-timeout", type=float, default=3600, help="seconds to wait for the first worker"
    )
    parser.add_argument("sync_args", nargs=argparse.REMAINDER, help="arguments for mirror sync")
    args = parser.parse_args(argv)
    sync_args = [a for a in args.sync_args if a != "--"]
    overrides = {k: v for k, v in (("queue", args.queue), ("account", args.account)) if v}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run_sync(args.workers, sync_args, args.wait_timeout, **overrides)


if __name__ == "__main__":
    sys.exit(main())
