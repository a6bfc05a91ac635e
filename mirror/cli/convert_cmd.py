"""Command group registration (filled in by the owning subsystem)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this group's commands to the top-level app."""
