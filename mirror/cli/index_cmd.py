"""``mirror index build``, ``mirror query`` and ``mirror export``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from mirror.cli import run

Dest = Annotated[str, typer.Option("--dest", help="Mirror destination: path, file://, s3://.")]
Snapshot = Annotated[
    str | None, typer.Option("--snapshot", help="Read this kept snapshot instead of LATEST.")
]


def build(
    *,
    dest: Dest,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Address of an existing Dask scheduler.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="Worker processes of the embedded cluster "
                     "(0 = parse in this process)."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-read every header.")] = False,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Snapshots to keep.")] = 3,
    state_dir: Annotated[
        str | None, typer.Option("--state-dir", help="Where the sync ledger lives (its "
                                 "withdrawn series are left out of the index).")
    ] = None,
) -> None:
    """Build (incrementally) and publish the Parquet metadata index of DEST."""
    from mirror.index.build import build_index, withdrawn_series
    from mirror.index.cluster import dask_client
    from mirror.index.views import open_dest

    def call() -> Any:
        store = open_dest(dest)
        exclude = withdrawn_series(dest, state_dir)
        if workers == 0 and not scheduler:
            return build_index(store, full=full, keep=keep, exclude=exclude)
        with dask_client(scheduler, workers) as client:
            return build_index(store, client=client, full=full, keep=keep, exclude=exclude)

    report = run(call)
    typer.echo(f"snapshot {report.snapshot_id}: {report.series} series "
               f"({report.extracted} read, {report.carried} carried, {report.removed} removed), "
               f"{report.instances} instances, {report.errors} header errors")


def query(
    sql: Annotated[str, typer.Argument(help="SQL over collections, patients, studies, "
                                       "series, instances, errors, volumes.")],
    *,
    dest: Dest,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    out: Annotated[str | None, typer.Option("--out", help="Write to this file.")] = None,
    snapshot: Snapshot = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows shown by --format table.")] = 100,
) -> None:
    """Run SQL over the index of DEST (DuckDB dialect)."""
    from mirror.errors import UsageError
    from mirror.index import views as q

    if fmt == "parquet" and not out:
        run(lambda: (_ for _ in ()).throw(UsageError("--format parquet needs --out FILE")))
    table = run(lambda: q.query(dest, sql, snapshot=snapshot))
    if fmt == "table" and not out:
        _print_table(table, limit)
        return
    run(lambda: _write(table, "csv" if fmt == "table" else fmt, out))


def _write(table: Any, fmt: str, out: str | None) -> None:
    from mirror.index.output import write_result

    if out is None:
        write_result(table, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with open(out, "wb") as fh:
        write_result(table, fmt, fh)


def _print_table(table: Any, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from mirror.index.output import (
        fits_horizontally,
        fits_whole,
        readable_widths,
        text_cells,
        vertical_lines,
    )

    names, cells = text_cells(table, limit)
    console = Console()
    wide = not fits_horizontally(names, cells, console.width)
    if wide:
        for line in vertical_lines(names, cells, console.width):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        view = Table(show_lines=False)
        for name, least in zip(names, readable_widths(names, cells), strict=True):
            view.add_column(name, min_width=least, overflow="ellipsis")
        for row in cells:
            view.add_row(*row)
        console.print(view)
    shown = min(limit, table.num_rows)
    more = f" ({shown} shown)" if shown < table.num_rows else ""
    if wide:
        more += "; too wide for a table, one row per block"
    if not fits_whole(names, cells, console.width):
        more += "; cells cut to fit: --format csv|json for full values"
    console.print(f"{table.num_rows} rows{more}", markup=False)


def export(
    *,
    dest: Dest,
    where: Annotated[str, typer.Option("--where", help="SQL predicate over the series table.")],
    to: Annotated[str, typer.Option("--to", help="Manifest file, or destination for dicom.")],
    fmt: Annotated[str, typer.Option("--format", help="manifest or dicom.")] = "manifest",
    snapshot: Snapshot = None,
) -> None:
    """Export the series matching --where as a .tcia manifest or a copy of their files."""
    from mirror.index.export import export_cohort

    report = run(lambda: export_cohort(dest, where, to, fmt=fmt, snapshot=snapshot))
    detail = (f", {report.copied} copied, {report.skipped} already there, "
              f"{report.files} files, {report.bytes} bytes" if fmt == "dicom" else "")
    typer.echo(f"{report.series} series -> {report.target} ({report.format}{detail})")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    index_app = typer.Typer(help="Parquet metadata index.", no_args_is_help=True)
    index_app.command("build")(build)
    app.add_typer(index_app, name="index")
    app.command("query")(query)
    app.command("export")(export)
