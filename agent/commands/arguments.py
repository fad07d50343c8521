"""Argument handling shared by commands: the same words and exit codes for the same mistakes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the wiring pulls in the database layer: only when a command runs
    from agent.wiring import AgentWiring
    from tools.ledger.pixels import PixelConfig


def parse_at(at: str | None) -> datetime | None:
    """``--at`` as a UTC datetime (None when not given); exit 2 on a malformed time."""
    from tools.timeutil import parse_iso

    if not at:
        return None
    try:
        return parse_iso(at)
    except ValueError:
        typer.echo(f"error: --at {at!r} is not an ISO-8601 time", err=True)
        raise typer.Exit(2) from None


def chosen_pixels(wiring: AgentWiring, pixel: list[str] | None) -> list[PixelConfig]:
    """The pixels named with ``--pixel`` (all known ones without it); exit 2 when unknown or none."""
    try:
        pixels = wiring.pixels(pixel or None)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None
    if not pixels:
        typer.echo("error: no pixels known: ingest events or configure pixels (CAPI_CONFIG)", err=True)
        raise typer.Exit(2)
    return pixels
