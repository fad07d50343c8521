"""``capi-agent report --week``: the weekly agency view from the ledger, as text, JSON or the PNG.

The same report the Slack channels and email addresses get on their weekday (every pixel, worst
first): coverage, server/browser ratio and EMQ day by day, open incidents, fixes applied.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    png = "png"


def report(
    week: bool = typer.Option(False, "--week", help="the weekly report (the only kind for now)"),
    at: str | None = typer.Option(None, "--at", help="the week whose report is due at this ISO time: it "
                                  "ends at the last weekly_day/weekly_hour before it (default: now)"),
    pixel: list[str] = typer.Option(None, "--pixel", help="pixel id (repeatable; default: all)"),
    output: ReportFormat = typer.Option(ReportFormat.text, "--format", help="text, json or png"),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="write to this file (needed for png)"),
    database_url: str | None = typer.Option(None, "--database-url", help="default: CAPI_DATABASE_URL"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML (default: CAPI_CONFIG)"),
) -> None:
    """Print or write the weekly report of every pixel (read from the ledger; audits nothing)."""
    if not week:
        typer.echo("error: say which report: --week (the only one so far)", err=True)
        raise typer.Exit(2)
    if output is ReportFormat.png and out is None:
        typer.echo("error: --format png needs --out FILE", err=True)
        raise typer.Exit(2)
    import json

    from agent.commands.arguments import chosen_pixels, parse_at
    from agent.summary.weekly import build_weekly, week_end_at
    from agent.wiring import open_wiring
    from tools.timeutil import utcnow

    when = parse_at(at) or utcnow()
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        pixels = chosen_pixels(wiring, pixel)
        first = min(pixels, key=lambda p: p.id)  # a channel's report follows its first pixel, here too
        end = week_end_at(when, timezone=first.timezone, weekday=first.weekly_day, hour=first.weekly_hour)
        with wiring.session() as session:
            result = build_weekly(session, pixels=pixels, end=end, timezone=first.timezone)
    if output is ReportFormat.png:
        from agent.summary.weekly_chart import render_png

        assert out is not None
        out.write_bytes(render_png(result))
        typer.echo(f"wrote {out} ({min(len(result.pixels), 24)} panel(s), {len(result.pixels)} pixel(s))")
        return
    if output is ReportFormat.json:
        body = json.dumps(result.to_json(), indent=2)
    else:
        from agent.summary.weekly_text import render_text

        body = render_text(result)
    if out is None:
        typer.echo(body)
    else:
        out.write_text(body + "\n")
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
