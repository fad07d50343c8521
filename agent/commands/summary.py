"""``capi-agent summary``: the audit summary of an hour (or a day), for a terminal or a script.

The same content as the Slack summary and the summary email: per pixel a status mark, server and
browser events against their usual level, EMQ, open incidents and fixes waiting for approval.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def summary(
    at: str | None = typer.Option(None, "--at", help="summarize the hour ending before this ISO time "
                                  "(default: the latest audited hour)"),
    pixel: list[str] = typer.Option(None, "--pixel", help="pixel id (repeatable; default: all)"),
    daily: bool = typer.Option(False, "--daily", help="the 24 hours before --at instead of one hour"),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json"),
    database_url: str | None = typer.Option(None, "--database-url", help="default: CAPI_DATABASE_URL"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML (default: CAPI_CONFIG)"),
) -> None:
    """Print the summary of the last complete hour before --at (read from the ledger; audits nothing)."""
    from datetime import timedelta

    from agent.commands.arguments import chosen_pixels, parse_at
    from agent.summary.collect import build_summary, latest_hour
    from agent.summary.text import render_text
    from agent.wiring import open_wiring
    from tools.timeutil import HOUR, audit_window

    when = parse_at(at)
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        pixels = chosen_pixels(wiring, pixel)
        with wiring.session() as session:
            end = audit_window(when)[1] if when is not None else latest_hour(
                session, pixel_ids=[p.id for p in pixels])
            if end is None:
                typer.echo("error: nothing audited yet (run capi-agent audit)", err=True)
                raise typer.Exit(1)
            start = end - (timedelta(days=1) if daily else HOUR)
            zone = min(pixels, key=lambda p: p.id).timezone
            result = build_summary(session, pixels=pixels, start=start, end=end, timezone=zone)
    typer.echo(json.dumps(result.to_json(), indent=2) if output is OutputFormat.json else render_text(result))


def register(app: typer.Typer) -> None:
    app.command("summary")(summary)
