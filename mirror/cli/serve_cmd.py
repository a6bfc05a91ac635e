"""``mirror serve``: the read-only DICOMweb server (and optional OHIF Viewer) over DEST."""

from __future__ import annotations

from typing import Annotated

import typer

from mirror.cli import run


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
    app.command("serve")(serve_command)


def serve_command(  # noqa: PLR0917 - one parameter per CLI option
    dest: Annotated[str, typer.Option("--dest", help="Mirror destination (folder, s3://...).")],
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: loopback "
                                      "only; put a TLS reverse proxy in front to expose).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
    viewer: Annotated[
        str | None, typer.Option("--viewer", help="OHIF Viewer dist/ folder to host at /viewer.")
    ] = None,
    state_dir: Annotated[
        str | None, typer.Option("--state-dir", help="Sync ledger folder: its withdrawn "
                                 "series stay hidden even if the index still lists them.")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allowed browser origin "
                                       "(repeatable; default: same origin only).")
    ] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="External URL behind a reverse proxy "
                                 "(used in RetrieveURL and BulkDataURI values).")
    ] = None,
    max_limit: Annotated[int, typer.Option("--max-limit", min=1, help="QIDO page cap.")] = 1000,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.0, help="Seconds between checks for a new "
                            "index snapshot.")
    ] = 5.0,
) -> None:
    """Serve DEST read-only over DICOMweb at /dicomweb (QIDO-RS, WADO-RS), with a catalogue at /.

    Set MIRROR_SERVE_TOKEN (bearer) or MIRROR_SERVE_BASIC (user:password) to require
    authentication.
    """
    from mirror.serve import Limits, ServeConfig, auth_from_env, serve

    def call() -> None:
        config = ServeConfig(dest=dest, host=host, port=port, viewer=viewer,
                             state_dir=state_dir, cors_origins=tuple(cors_origin or ()),
                             public_url=public_url,
                             auth=auth_from_env(), refresh_seconds=refresh,
                             limits=Limits(max_limit=max_limit))
        serve(config)

    run(call)
