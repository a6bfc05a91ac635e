"""The ``mirror`` command: parse, configure logging, call one library function, exit.

This package is the only place that configures logging, prints for humans and calls
``sys.exit``. Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from mirror import __version__
from mirror.errors import EXIT_DESTINATION, EXIT_INTERRUPTED, MirrorError, exit_code_for

app = typer.Typer(
    name="mirror",
    help="Mirror The Cancer Imaging Archive: verified incremental sync, Parquet indexes, OME-Zarr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

T = TypeVar("T")
log = logging.getLogger("mirror")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever ``sys.stderr`` is at emit time.

    A handler bound to the stream object seen at start-up keeps writing to it after test
    runners (or daemonisers) swap and close it.
    """

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(verbose: int, quiet: bool, log_format: str) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = _StderrHandler()
    if log_format == "json":
        from mirror.cli._jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("mirror").setLevel(level)
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "botocore", "s3fs", "aiobotocore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    _quiet_dask(logging.INFO if verbose else logging.WARNING)


def _quiet_dask(level: int) -> None:
    """Cluster start/stop chatter (nanny closed, scheduler closing comms) only with ``-v``.

    ``distributed`` sets its own logger to INFO when it is first imported, which happens
    lazily inside commands, after this runs: so the level goes into dask's config, which
    that import reads, as well as onto the logger for an import that already happened.
    """
    import dask.config

    name = logging.getLevelName(level).lower()
    dask.config.set({"logging": {"distributed": name}})
    logging.getLogger("distributed").setLevel(level)


def run(call: Callable[[], T]) -> T:
    """Run one library call; turn our errors into a one-line message and the exit code."""
    try:
        return call()
    except MirrorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc
    except KeyboardInterrupt as exc:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from exc
    except OSError as exc:
        # Archive faults arrive as ArchiveError (a MirrorError); a bare OSError here comes
        # from a local file: the destination, the state dir or a report path (exit 4).
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_DESTINATION) from exc


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mirror {__version__}")
        raise typer.Exit(0)


Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More log output.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors and the summary.")]
LogFormat = Annotated[str, typer.Option("--log-format", help="text or json (JSON lines).")]
Version = Annotated[
    bool,
    typer.Option("--version", callback=version_callback, is_eager=True, help="Print version."),
]


@app.callback()
def _main(
    verbose: Verbose = 0,
    quiet: Quiet = False,
    log_format: LogFormat = "text",
    version: Version = False,
) -> None:
    """Mirror The Cancer Imaging Archive."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format must be text or json")
    configure_logging(verbose, quiet, log_format)


def _register_commands() -> None:
    # Imported here, not at module top, so `mirror --help` stays fast and each group
    # module can import heavy libraries lazily inside its commands.
    from mirror.cli import archive_cmd, convert_cmd, index_cmd, serve_cmd, sync_cmd

    for module in (archive_cmd, sync_cmd, index_cmd, convert_cmd, serve_cmd):
        module.register(app)


_register_commands()


def main() -> None:
    """The console entry point: run one command, then end the process with its exit code
    (embed ``app`` instead to run commands inside another program)."""
    atexit.register(_leave)
    try:
        app()
    except SystemExit as exc:
        _ending.append(exc.code)
        raise
    except MirrorError as exc:  # errors raised outside run(), e.g. in callbacks
        typer.echo(f"error: {exc}", err=True)
        code = exit_code_for(exc)
        _ending.append(code)
        sys.exit(code)


# The exit code a command ended with; none after an uncaught exception (traceback, exit 1).
_ending: list[object] = []


def _leave() -> None:
    """The last exit handler (registered first, so run after every other one and after
    non-daemon threads were joined): flush the logs and streams and end the process.

    What it skips is the interpreter's teardown, freeing the state of pyarrow, pandas,
    distributed and every module: 0.2-0.3 s after a sync has done its work and released
    its locks, 3 % of a ten-second run. Every file we write is closed by its ``with``.
    """
    if not _ending or not isinstance(_ending[-1], int | None):
        # An uncaught exception (traceback, exit 1) or sys.exit("message"): the interpreter
        # prints those, so let it finish.
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_ending[-1] or 0)
