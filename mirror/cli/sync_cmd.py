"""``mirror sync``, ``status``, ``verify``, ``ledger rebuild`` and ``demo``: thin wrappers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from mirror.cli import run
from mirror.config import (
    DEFAULT_HTTP_SLOTS,
    DEFAULT_THREADS,
    ClusterConfig,
    Selection,
    SyncConfig,
    archive_url_from_env,
    lease_seconds_from_env,
    resolve_state_dir,
    scheduler_from_env,
    store_options_from_env,
)
from mirror.config import LEDGER_NAME as _LEDGER
from mirror.errors import EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY
from mirror.guards import DEFAULT_MAX_DELETE, MaxDelete
from mirror.layout import DEFAULT_TEMPLATE
from mirror.sync.report import RunSummary
from mirror.sync.run import Progress, ProgressFn

Dest = Annotated[
    str, typer.Option("--dest", help="Destination: a folder, file://, s3://bucket/prefix.")
]
StateDir = Annotated[
    str | None,
    typer.Option(
        "--state-dir", help="Ledger + lock folder (env MIRROR_STATE_DIR).", show_default=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--source",
        help="nbia (the NBIA v4 API), idc (Imaging Data Commons' buckets) or auto "
        "(each series from IDC where IDC has it, else NBIA).",
    ),
]
IdcIndex = Annotated[
    str | None,
    typer.Option(
        "--idc-index",
        help="IDC release index: a folder or URL holding idc_index.parquet "
        "(default: the installed idc-index-data).",
    ),
]
IdcEndpoint = Annotated[
    str | None,
    typer.Option(
        "--idc-endpoint",
        help="S3-compatible endpoint for IDC's buckets (env MIRROR_IDC_ENDPOINT; default AWS).",
    ),
]

ledger_app = typer.Typer(help="Maintain the sync ledger.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("sync")(sync_command)
    app.command("status")(status_command)
    app.command("verify")(verify_command)
    app.command("demo")(demo_command)
    app.add_typer(ledger_app, name="ledger")
    ledger_app.command("rebuild")(rebuild_command)


def sync_command(  # noqa: PLR0917 - one parameter per CLI option
    collections: Annotated[
        list[str] | None, typer.Argument(help="Collections (default: all mirrored).")
    ] = None,
    dest: Dest = ...,  # type: ignore[assignment]
    archive: Annotated[
        str | None, typer.Option("--archive", help="NBIA API base URL (env MIRROR_ARCHIVE_URL).")
    ] = None,
    source: SourceOpt = "nbia",
    idc_index: IdcIndex = None,
    idc_endpoint: IdcEndpoint = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="A .tcia manifest or a UID list.")
    ] = None,
    modality: Annotated[
        list[str] | None, typer.Option("--modality", help="Only this modality (repeatable).")
    ] = None,
    patient: Annotated[
        list[str] | None, typer.Option("--patient", help="Only this PatientID (repeatable).")
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="List every collection: find withdrawals and silent changes."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only; print counts and bytes.")
    ] = False,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete", help="Move withdrawn series to _attic/<run_id>/ (default: tombstone)."
        ),
    ] = False,
    max_delete: Annotated[
        str, typer.Option("--max-delete", help="Abort (exit 6) above N or P% withdrawals.")
    ] = str(DEFAULT_MAX_DELETE),
    allow_empty: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-empty",
            help="This collection really was emptied upstream: withdraw all of it (repeatable).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address (env DASK_SCHEDULER_ADDRESS)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Embedded worker processes (0: threads only). Default: 2 for nbia and auto, "
            "0 for idc (one process, one event loop for every object).",
            show_default=False,
        ),
    ] = None,
    threads_only: Annotated[
        bool, typer.Option("--threads-only", help="Same as --workers 0: one in-process worker.")
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", help="Threads per worker.")
    ] = DEFAULT_THREADS,
    http_slots: Annotated[
        int, typer.Option("--downloads-per-worker", help="Concurrent series downloads per worker.")
    ] = DEFAULT_HTTP_SLOTS,
    max_connections: Annotated[
        int | None,
        typer.Option("--max-connections", help="Cluster-wide cap on concurrent downloads."),
    ] = None,
    drain_timeout: Annotated[
        float,
        typer.Option(
            "--drain-timeout",
            min=0,
            help="On SIGTERM or a destination error, wait up to this many seconds for "
            "running series and record them.",
        ),
    ] = 120.0,
    state_dir: StateDir = None,
    layout: Annotated[
        str, typer.Option("--layout", help="Series path template.")
    ] = DEFAULT_TEMPLATE,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write the run summary here (atomic).")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="Prometheus textfile (.prom) to write.")
    ] = None,
    scratch_dir: Annotated[
        str | None,
        typer.Option(
            "--scratch-dir", help="Where workers extract series bound for S3 (default: TMPDIR)."
        ),
    ] = None,
    changed_files: Annotated[
        Path | None,
        typer.Option("--changed-files", help="Write the series folders this run changed."),
    ] = None,
    build_index: Annotated[
        bool, typer.Option("--index", help="Then build the Parquet index (mirror index build).")
    ] = False,
    convert: Annotated[
        bool, typer.Option("--convert", help="Then convert changed series to OME-Zarr.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Incrementally mirror collections into DEST; exit codes are documented in the README."""

    def call() -> RunSummary:
        from mirror.archive.sources import open_source
        from mirror.cli.compose import sync
        from mirror.sync.manifest import read_manifest

        config = SyncConfig(
            dest=dest,
            archive_url=archive_url_from_env(archive),
            selection=Selection(
                collections=tuple(collections or ()),
                manifest_uids=tuple(read_manifest(manifest)) if manifest else None,
                modalities=tuple(modality or ()),
                patients=tuple(patient or ()),
            ),
            full=full,
            dry_run=dry_run,
            delete=delete,
            max_delete=MaxDelete.parse(max_delete),
            allow_empty=tuple(allow_empty or ()),
            state_dir=state_dir,
            layout=layout,
            summary_json=str(summary_json) if summary_json else None,
            metrics=str(metrics) if metrics else None,
            changed_files=str(changed_files) if changed_files else None,
            scratch_dir=scratch_dir,
            drain_seconds=drain_timeout,
            cluster=ClusterConfig(
                scheduler=scheduler_from_env(scheduler),
                workers=0 if threads_only else default_workers(source, workers),
                threads=threads,
                http_slots=http_slots,
                max_connections=max_connections,
            ),
            store_options=store_options_from_env(dest),
            lease_seconds=lease_seconds_from_env(),
        )
        the_source = open_source(
            source, config.archive_url, idc_index=idc_index, idc_endpoint=idc_endpoint,
            connections=config.cluster.downloads_per_worker,
        )
        with _progress_display(as_json) as progress:
            return sync(config, archive=the_source, progress=progress)

    summary = run(call)
    _print_summary(summary, as_json)
    code = summary.exit_code
    if not dry_run and code in (EXIT_OK, EXIT_PARTIAL):
        # Conversion and indexing are CPU work: processes, whatever the source.
        chosen = 2 if workers is None else workers
        cluster = (scheduler_from_env(scheduler), 0 if threads_only else chosen)
        code = _follow_up(dest, state_dir, cluster, build_index, convert, code)
    raise typer.Exit(code)


def default_workers(source: str, workers: int | None) -> int:
    """``--workers`` when given; else 0 (threads only) for IDC and 2 for NBIA and auto.

    An IDC series is objects fetched by one event loop per process (mirror.archive.idc.shared)
    whose byte work (write, MD5) releases the GIL; a second process only doubles the start-up
    and the imports. On 2 cores, 1,345 objects: 4.5 s CPU for the whole command threads-only,
    8.5 s with 2 workers (benchmarks/idc_fetch.py). NBIA's ZIP unpacking holds the GIL more:
    processes pay off there.
    """
    if workers is not None:
        return workers
    return 0 if source == "idc" else 2


def _follow_up(  # noqa: PLR0917 - the follow-up flags of one run
    dest: str,
    state_dir: str | None,
    cluster: tuple[str | None, int],
    build_index: bool,
    convert: bool,
    code: int,
) -> int:
    """Convert, then index, what the run committed (also after a partial run).

    Conversion runs first so the index's ``volumes`` table includes this run's volumes.

    Each step keeps its own exit code; the run reports the worst of them.
    """
    from mirror.cli import convert_cmd, index_cmd

    scheduler, workers = cluster
    steps: list[Callable[[], None]] = []
    if convert:
        steps.append(lambda: convert_cmd.convert_command(dest=dest, scheduler=scheduler,
                                                         workers=workers))
    if build_index:
        steps.append(
            lambda: index_cmd.build(
                dest=dest, scheduler=scheduler, workers=workers, full=False, keep=3,
                state_dir=state_dir,
            )
        )  # fmt: skip
    for step in steps:
        try:
            step()
        except typer.Exit as stop:
            code = max(code, stop.exit_code)
    return code


def status_command(dest: Dest, state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Series per state and collection, the last runs and the watermarks."""
    from mirror.sync.ops import status

    report = run(lambda: status(dest, resolve_state_dir(dest, state_dir) / _LEDGER))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, sort_keys=True))
        return
    _print_status(report.to_dict())


def verify_command(  # noqa: PLR0917 - one parameter per CLI option
    dest: Dest,
    deep: Annotated[bool, typer.Option("--deep", help="Re-read and hash every file.")] = False,
    upstream: Annotated[
        bool,
        typer.Option(
            "--upstream", help="Also compare with the archive's MD5 hierarchy (getMD5Hierarchy)."
        ),
    ] = False,
    archive: Annotated[
        str | None, typer.Option("--archive", help="NBIA API base URL (env MIRROR_ARCHIVE_URL).")
    ] = None,
    state_dir: StateDir = None,
    as_json: AsJson = False,
    cross_source: Annotated[
        bool,
        typer.Option(
            "--cross-source",
            help="Also compare NBIA's MD5s with IDC's object MD5s for every held series both "
            "list; every difference is reported (exit 5).",
        ),
    ] = False,
    idc_index: IdcIndex = None,
    idc_endpoint: IdcEndpoint = None,
) -> None:
    """Check every held series against its sidecar (and the archive); exit 5 on any problem."""
    from mirror.storage import open_store
    from mirror.sync.ops import verify

    def call() -> Any:
        from mirror.archive.port import HashedArchive
        from mirror.archive.sources import open_source
        from mirror.errors import UsageError

        store = open_store(dest, **store_options_from_env(dest))
        the_archive = open_source("nbia", archive_url_from_env(archive)) if upstream else None
        if the_archive is not None and not isinstance(the_archive, HashedArchive):
            raise UsageError(f"{the_archive.url} offers no MD5 hierarchy to compare with")
        ledger = resolve_state_dir(dest, state_dir) / _LEDGER
        return verify(store, ledger, deep=deep, upstream=the_archive)

    report = run(call)
    cross = None
    if cross_source:
        cross = run(lambda: _cross_source(dest, archive, idc_index, idc_endpoint))
    if as_json:
        data = report.to_dict()
        if cross is not None:
            data["cross_source"] = cross.to_dict()
        typer.echo(json.dumps(data, indent=1, sort_keys=True))
    else:
        for broken in report.broken:
            for problem in broken.problems:
                typer.echo(f"BROKEN {broken.series_uid}: {problem}", err=True)
            if broken.series_uid in report.superseded:
                typer.echo(f"BROKEN {broken.series_uid}: a sync took it up meanwhile; "
                           "left to that sync", err=True)  # fmt: skip
        state = "ok" if report.ok else f"{len(report.broken)} series broken"
        mode = "".join(flag for flag, on in ((" --deep", deep), (" --upstream", upstream)) if on)
        typer.echo(f"verify{mode}: {report.checked} series checked, {state}")
        if cross is not None:
            _print_cross(cross)
    if not report.ok or (cross is not None and not cross.ok):
        raise typer.Exit(EXIT_VERIFY)


def _cross_source(
    dest: str, archive: str | None, idc_index: str | None, idc_endpoint: str | None
) -> Any:
    from mirror.archive.sources import open_source
    from mirror.storage import open_store
    from mirror.sync.crossverify import cross_source

    store = open_store(dest, **store_options_from_env(dest))
    url = archive_url_from_env(archive)
    idc = open_source("idc", url, idc_index=idc_index, idc_endpoint=idc_endpoint)
    return cross_source(store, open_source("nbia", url), idc)


def _print_cross(cross: Any) -> None:
    from mirror.sync.crossverify import describe

    for line in describe(cross.differences):
        typer.echo(line, err=True)
    state = "identical" if cross.ok else f"{len(cross.differences)} series differ"
    typer.echo(
        f"cross-source: {cross.checked} series held by both NBIA and IDC compared, {state}"
        f" ({cross.only_one_source} listed by one source only, {cross.downloads} fetched)"
    )


def rebuild_command(dest: Dest, state_dir: StateDir = None) -> None:
    """Recreate the ledger from the destination's _series.json sidecars."""
    from mirror.storage import open_store
    from mirror.sync.ops import rebuild_ledger

    def call() -> Any:
        store = open_store(dest, **store_options_from_env(dest))
        return rebuild_ledger(store, resolve_state_dir(dest, state_dir) / _LEDGER)

    report = run(call)
    if report.backup:
        typer.echo(f"previous ledger kept as {report.backup}")
    for path in report.unreadable:
        typer.echo(f"unreadable sidecar skipped: {path}", err=True)
    typer.echo(f"ledger rebuilt at {report.ledger_path}: {report.series} series present")


def demo_command(
    dest: Annotated[Path, typer.Option("--dest", help="Folder to mirror into.")] = Path(
        "demo-mirror"
    ),
    preset: Annotated[
        str, typer.Option("--preset", help="Simulated archive: tiny or demo.")
    ] = "demo",
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (0: threads only).")
    ] = 2,
    source: SourceOpt = "nbia",
) -> None:
    """Serve a simulated TCIA (NBIA API, IDC bucket, or both) on 127.0.0.1 and mirror it
    into DEST (offline, no setup)."""
    from mirror.cli.compose import open_destination
    from mirror.cli.demo_sources import simulated_source
    from mirror.sync.demo import demo

    config = SyncConfig(dest=str(dest), cluster=ClusterConfig(workers=workers, threads=4))

    def call() -> Any:
        with simulated_source(source, preset) as simulated, _progress_display(False) as progress:
            typer.echo(f"simulated {source} source at {simulated.url}", err=True)
            return demo(
                config,
                source=simulated.source,
                store=open_destination(config),
                url=simulated.url,
                today=simulated.today,
                progress=progress,
            )

    result = run(call)
    _print_demo(result)
    raise typer.Exit(result.summary.exit_code)


# --- output -------------------------------------------------------------------------------


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _print_summary(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        typer.echo(summary.to_json(), nl=False)
        return
    c = summary.counts
    if summary.plan is not None:
        p = summary.plan["counts"]
        typer.echo(
            f"dry run: {p['new']} new, {p['changed']} changed, {p['retry']} to retry, "
            f"{p['unchanged']} unchanged, {p['withdrawn']} withdrawn upstream; "
            f"{_human_bytes(summary.plan['bytes_to_fetch'])} to fetch"
        )
    else:
        typer.echo(
            f"sync {summary.run_id}: {summary.status} (exit {summary.exit_code}): "
            f"{c['downloaded']} new, {c['updated']} updated, {c['unchanged']} unchanged, "
            f"{c['withdrawn']} withdrawn, {c['failed']} failed; "
            f"{_human_bytes(summary.bytes['downloaded'])} downloaded in {summary.duration_s:.1f} s"
        )
    for failure in summary.failures[:20]:
        typer.echo(
            f"FAILED {failure.series_uid} ({failure.error_class}): {failure.message}", err=True
        )
    if summary.error:
        typer.echo(f"error: {summary.error}", err=True)


def _print_status(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mirror at {data['destination']}")
    states = ["present", "in_progress", "failed", "withdrawn"]
    table.add_column("collection")
    for state in states:
        table.add_column(state, justify="right")
    for name, counts in sorted(data["collections"].items()):
        table.add_row(name, *(str(counts.get(s, 0)) for s in states))
    console = Console()
    console.print(table)
    console.print(f"{_human_bytes(data['bytes_present'])} present; ledger {data['ledger']}")
    for label in ("last_run", "last_success"):
        run_info = data[label]
        if run_info:
            console.print(
                f"{label}: {run_info['run_id']} exit {run_info['exit_code']} "
                f"at {run_info['finished_at']}"
            )
    for name, wm in sorted(data["watermarks"].items()):
        console.print(f"watermark {name}: {wm or 'none (next run lists it in full)'}")


_DEMO_SQL = '"SELECT collection, count(*) AS series FROM series GROUP BY 1"'


def _print_demo(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"demo mirror in {result.dest}")
    table.add_column("collection")
    table.add_column("series", justify="right")
    for name, count in sorted(result.collections.items()):
        table.add_row(name, str(count))
    console.print(table)
    _print_summary(result.summary, False)
    console.print("next, try:")
    dest = result.dest
    for cmd in (
        f"mirror status --dest {dest}",
        f"mirror verify --dest {dest} --deep",
        f"mirror index build --dest {dest}",
        f"mirror query --dest {dest} " + _DEMO_SQL,
        "mirror convert --help",
        "mirror archive serve --preset demo   # then: mirror sync --dest DIR --archive URL",
    ):
        console.print(f"  {cmd}")


@contextmanager
def _progress_display(quiet: bool) -> Iterator[ProgressFn | None]:
    """A rich bar on a terminal; plain log-friendly lines otherwise."""
    # -q raises the "mirror" logger to ERROR: cron wants only errors and the summary line.
    if quiet or logging.getLogger("mirror").getEffectiveLevel() > logging.INFO:
        yield None
        return
    if not sys.stderr.isatty():
        yield _line_progress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as bar:
        task_id = bar.add_task("series", total=None)

        def update(event: Progress) -> None:
            bar.update(task_id, completed=event.done, total=event.total)

        yield update


def _line_progress() -> Callable[[Progress], None]:
    def report(event: Progress) -> None:
        step = max(1, event.total // 20)
        if event.done % step == 0 or event.done == event.total or event.outcome == "failed":
            typer.echo(f"[{event.done}/{event.total}] {event.series_uid} {event.outcome}", err=True)

    return report
