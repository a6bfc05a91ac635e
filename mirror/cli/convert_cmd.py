"""``mirror convert``: committed series -> OME-Zarr 0.5 stores under ``_zarr/``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mirror.cli import run
from mirror.config import scheduler_from_env, store_options_from_env
from mirror.errors import EXIT_PARTIAL

if TYPE_CHECKING:
    from mirror.convert.pipeline import ConversionResult


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("convert")(convert_command)


def convert_command(  # noqa: PLR0917 - one parameter per CLI option
    dest: Annotated[str, typer.Option("--dest", help="Mirror destination (folder, s3://...).")],
    series: Annotated[
        list[str] | None, typer.Option("--series", help="Only this SeriesInstanceUID (repeatable).")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="SQL predicate on the index's series table."),
    ] = None,
    out: Annotated[str, typer.Option("--out", help="Output prefix inside the destination.")] = (
        "_zarr"
    ),
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address (env DASK_SCHEDULER_ADDRESS)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Local worker processes (0 = in this process)."),
    ] = None,
    threads: Annotated[
        int, typer.Option("--threads", help="Decode threads per series.", min=1)
    ] = 2,
    force: Annotated[bool, typer.Option("--force", help="Reconvert even if unchanged.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Convert committed series to OME-Zarr (only those whose content changed)."""
    from mirror.convert.pipeline import convert_dest

    results = run(
        lambda: convert_dest(
            dest,
            series=series or (),
            where=where,
            out_prefix=out,
            scheduler=scheduler_from_env(scheduler),
            workers=workers,
            force=force,
            threads=threads,
            store_options=store_options_from_env(dest),
        )
    )
    for r in results:
        typer.echo(_line(r, as_json))
    statuses = ("converted", "unchanged", "failed")
    counts = {s: sum(1 for r in results if r.status == s) for s in statuses}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()), err=True)
    if counts["failed"]:
        raise typer.Exit(EXIT_PARTIAL)


def _line(r: ConversionResult, as_json: bool) -> str:
    if as_json:
        return json.dumps({
            "series_uid": r.series_uid, "status": r.status, "store": r.zarr_prefix,
            "stacks": r.written_stacks, "quarantined": r.quarantined_stacks, "reason": r.reason,
        })  # fmt: skip
    detail = f" ({r.reason})" if r.reason else ""
    stacks = f"[{r.written_stacks} stacks, {r.quarantined_stacks} quarantined]"
    return f"{r.status:<10} {r.series_uid} -> {r.zarr_prefix} {stacks}{detail}"
