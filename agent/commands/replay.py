"""``capi-agent replay --pixel ID --since ISO --until ISO [--event NAME ...] [--dry-run] [--yes]``:
resend ledger events that were never delivered (or failed), after showing what would be sent.

The replay is a fix like any other: it is proposed, approved by the person at the terminal (recorded
as ``cli:$USER`` in the fix trail) and run through the fix graph (``AgentServices``), exactly as an
approval in Slack: the same token (the pixel's own token wins over ``META_ACCESS_TOKEN``), the same
``appsecret_proof`` (``META_APP_SECRET``), the same journal, verification and audit trail."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tools.timeutil import parse_iso, to_iso, utcnow

if TYPE_CHECKING:  # the heavy modules are imported inside the command (the CLI starts instantly)
    from agent.wiring import AgentWiring
    from tools.fixes.types import FixPreview


def print_preview(preview: FixPreview) -> None:
    typer.echo(f"{preview.kind} for pixel {preview.pixel_id}: events from {to_iso(preview.since)} "
               f"to {to_iso(preview.until)}" + (f" ({', '.join(preview.event_names)})"
                                                 if preview.event_names else ""))
    typer.echo(f"  {preview.total_events} events in {preview.requests} request(s)")
    if preview.value_by_currency:
        typer.echo("  value: " + ", ".join(f"{value:,.2f} {currency}"
                                           for currency, value in preview.value_by_currency.items()))
    if preview.refs:
        more = preview.total_events - len(preview.refs)
        typer.echo(f"  orders: {', '.join(preview.refs)}" + (f" and {more} more" if more > 0 else ""))
    for row in preview.by_event_hour:
        typer.echo(f"    {to_iso(row.hour)}  {row.event_name:<24} {row.count}")
    for change in preview.changes:
        typer.echo(f"  change: {change.parameter} {change.action} on {change.count}")
    for skip in preview.skipped:
        typer.echo(f"  skipped: {skip.count} {skip.reason.replace('_', ' ')}")


def print_outcome(state: dict[str, Any], proposal_id: str) -> None:
    """The fix graph's final state: the result of the run, its verification or why it did not run."""
    result = state.get("result")
    if result:
        typer.echo(f"sent {result['sent']}, received by Meta {result['received']}, skipped {result['skipped']}, "
                   f"failed {result['failed']}, uncertain {result['uncertain']}, requests {result['requests']}")
        for key, count in sorted((result.get("errors") or {}).items()):
            typer.echo(f"  error {key}: {count} request(s)")
        if result["uncertain"]:
            typer.echo("  uncertain events were not resent automatically: check Events Manager, then run "
                       f"capi-agent fixes release-uncertain {proposal_id} --by NAME to resend them")
        if not result.get("finished", True):
            typer.echo("  not finished (rate limited or interrupted): run "
                       f"capi-agent fixes resume {proposal_id} to go on")
    if state.get("verification"):
        typer.echo(f"  verification: {state['verification']['summary']}")
    if state.get("error"):
        typer.echo(f"  error: {state['error']}")


def local_user() -> str:
    """How the person at this terminal is named in the fix trail."""
    return f"cli:{getpass.getuser()}"


def replay(
    pixel: str = typer.Option(..., "--pixel", help="pixel (dataset) id"),
    since: str = typer.Option(..., "--since", help="start of the event_time window (ISO-8601)"),
    until: str = typer.Option(..., "--until", help="end of the event_time window (ISO-8601, excluded)"),
    event: list[str] = typer.Option([], "--event", help="event name to replay (repeatable; default all)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent, send nothing"),
    yes: bool = typer.Option(False, "--yes", help="approve without asking"),
    database_url: str | None = typer.Option(None, "--database-url",
                                            help="SQLAlchemy URL (default: CAPI_DATABASE_URL)"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML (default: CAPI_CONFIG)"),
) -> None:
    """Resend undelivered or failed events of a window (older than 7 days: skipped and reported)."""
    # Imported here: building the CLI (and every other command) must stay free of the ledger.
    from agent.wiring import open_agent, open_wiring
    from tools.fixes.planner import propose_fix
    from tools.fixes.preview import build_preview
    from tools.fixes.types import ALL_UNDELIVERED

    try:
        params = {"since": to_iso(parse_iso(since)), "until": to_iso(parse_iso(until)),
                  "event_names": sorted(set(event)), "statuses": list(ALL_UNDELIVERED)}
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    approver = local_user()
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        at = utcnow()
        if dry_run:
            with wiring.session() as session:
                print_preview(build_preview(session, pixel_id=pixel, kind="replay", params=params, at=at))
            typer.echo("dry run: nothing sent")
            return
        try:
            [pixel_config] = wiring.pixels([pixel])
        except KeyError as exc:
            if not _seen_in_ledger(wiring, pixel):
                typer.echo(f"error: {exc.args[0]}", err=True)
                raise typer.Exit(2) from None
            [pixel_config] = wiring.pixels([pixel])
        if wiring.pixel_token(pixel_config) is None:
            typer.echo("error: no access token for this pixel (set its access_token_env, or "
                       "META_ACCESS_TOKEN)", err=True)
            raise typer.Exit(2)
        with open_agent(wiring) as services:
            with wiring.session() as session:
                proposal = propose_fix(session, pixel_id=pixel, kind="replay", params=params, at=at,
                                       created_by=approver)
            print_preview(proposal.preview)
            # The proposal's fix run, waiting for its approval like one posted to Slack.
            services.start_fix({"proposal_id": proposal.id, "audit_at": to_iso(at)})
            if proposal.preview.total_events == 0:
                services.resolve_fix(proposal.id, action="reject", by=approver)
                typer.echo("nothing to replay")
                return
            if not (yes or typer.confirm("Send these events to Meta?", default=False)):
                services.resolve_fix(proposal.id, action="reject", by=approver)
                typer.echo("not approved: nothing sent")
                raise typer.Exit(1)
            typer.echo(f"approved by {approver} as {proposal.id}; sending")
            state = services.resolve_fix(proposal.id, action="approve", by=approver)
        print_outcome(state, proposal.id)
        result = state.get("result") or {}
        if state.get("outcome") != "executed" or result.get("failed"):
            raise typer.Exit(1)


def _seen_in_ledger(wiring: AgentWiring, pixel_id: str) -> bool:
    """Whether the ledger holds events of a pixel it has no row for; if so, give it its row (with
    default settings, as ingest does), so the fix graph knows it."""
    from sqlalchemy import select
    from sqlmodel import col

    from tools.ledger.models import Event
    from tools.ledger.pixels import ensure_pixels

    with wiring.session() as session:
        if session.scalar(select(col(Event.id)).where(col(Event.pixel_id) == pixel_id).limit(1)) is None:
            return False
        ensure_pixels(session, [pixel_id])
        session.commit()
    return True


def register(app: typer.Typer) -> None:
    """Add the ``replay`` command to the CLI."""
    app.command("replay")(replay)
