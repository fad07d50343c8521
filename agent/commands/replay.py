"""``capi-agent replay --pixel ID --since ISO --until ISO [--event NAME ...] [--dry-run] [--yes]``:
resend ledger events that were never delivered (or failed), after showing what would be sent.

The person at the terminal is the approver (recorded as ``cli:$USER`` in the fix trail)."""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING

import typer

from tools.timeutil import parse_iso, to_iso, utcnow

if TYPE_CHECKING:  # the heavy modules are imported inside the command (the CLI starts instantly)
    from sqlalchemy.orm import Session

    from tools.fixes.execute import ChunkProgress
    from tools.fixes.types import ExecutionResult, FixPreview


def _print_preview(preview: FixPreview) -> None:
    typer.echo(f"replay for pixel {preview.pixel_id}: events from {to_iso(preview.since)} "
               f"to {to_iso(preview.until)}" + (f" ({', '.join(preview.event_names)})"
                                                 if preview.event_names else ""))
    typer.echo(f"  {preview.total_events} events in {preview.requests} request(s)")
    for row in preview.by_event_hour:
        typer.echo(f"    {to_iso(row.hour)}  {row.event_name:<24} {row.count}")
    for skip in preview.skipped:
        typer.echo(f"  skipped: {skip.count} {skip.reason.replace('_', ' ')}")


def _print_result(result: ExecutionResult) -> None:
    typer.echo(f"sent {result.sent}, received by Meta {result.received}, skipped {result.skipped}, "
               f"failed {result.failed}, uncertain {result.uncertain}, requests {result.requests}")
    for key, count in sorted(result.errors.items()):
        typer.echo(f"  error {key}: {count} request(s)")
    if result.uncertain:
        typer.echo("  uncertain events were not resent automatically: check Events Manager, then use "
                   "tools.fixes.execute.release_uncertain to resend them")
    if not result.finished:
        typer.echo("  not finished (rate limited or interrupted): run the same command again to resume")


def _token(session: Session, pixel_id: str, env_token: str | None) -> str | None:
    from tools.ledger.models import Pixel

    row = session.get(Pixel, pixel_id)
    if row is not None and (row.settings or {}).get("relay_unconfigured"):
        return None  # events relayed for a pixel the operator never configured: not with our token
    if env_token:
        return env_token
    env_name = (row.settings or {}).get("access_token_env") if row is not None else None
    return os.environ.get(str(env_name)) if env_name else None


def replay(
    pixel: str = typer.Option(..., "--pixel", help="pixel (dataset) id"),
    since: str = typer.Option(..., "--since", help="start of the event_time window (ISO-8601)"),
    until: str = typer.Option(..., "--until", help="end of the event_time window (ISO-8601, excluded)"),
    event: list[str] = typer.Option([], "--event", help="event name to replay (repeatable; default all)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent, send nothing"),
    yes: bool = typer.Option(False, "--yes", help="approve without asking"),
    database_url: str | None = typer.Option(None, "--database-url",
                                            help="SQLAlchemy URL (default: CAPI_DATABASE_URL)"),
) -> None:
    """Resend undelivered or failed events of a window (older than 7 days: skipped and reported)."""
    # Imported here: building the CLI (and every other command) must stay free of the ledger.
    from sqlalchemy.orm import Session

    from agent.settings import load_settings
    from tools.fixes.execute import execute_fix
    from tools.fixes.planner import decide, propose_fix
    from tools.fixes.preview import build_preview
    from tools.fixes.types import ALL_UNDELIVERED
    from tools.ledger.db import make_engine, migrate, normalize_database_url, session_factory
    from tools.meta.client import GraphClient

    try:
        params = {"since": to_iso(parse_iso(since)), "until": to_iso(parse_iso(until)),
                  "event_names": sorted(set(event)), "statuses": list(ALL_UNDELIVERED)}
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = load_settings()
    engine = make_engine(normalize_database_url(database_url or settings.database_url))
    at = utcnow()
    approver = f"cli:{getpass.getuser()}"
    try:
        migrate(engine)
        with Session(engine) as session:
            if dry_run:
                _print_preview(build_preview(session, pixel_id=pixel, kind="replay", params=params, at=at))
                typer.echo("dry run: nothing sent")
                return
            proposal = propose_fix(session, pixel_id=pixel, kind="replay", params=params, at=at,
                                   created_by=approver)
            _print_preview(proposal.preview)
            if proposal.preview.total_events == 0:
                decide(session, proposal_id=proposal.id, actor=approver, decision="reject", at=utcnow())
                typer.echo("nothing to replay")
                return
            if not (yes or typer.confirm("Send these events to Meta?", default=False)):
                decide(session, proposal_id=proposal.id, actor=approver, decision="reject", at=utcnow())
                typer.echo("not approved: nothing sent")
                raise typer.Exit(1)
            decide(session, proposal_id=proposal.id, actor=approver, decision="approve", at=utcnow())
            token = _token(session, pixel, settings.meta_access_token.get_secret_value()
                           if settings.meta_access_token else None)
        if not token:
            typer.echo("error: no access token (set META_ACCESS_TOKEN or the pixel's access_token_env)",
                       err=True)
            raise typer.Exit(2)
        typer.echo(f"approved by {approver} as {proposal.id}; sending")
        with GraphClient(base_url=settings.meta_graph_url, api_version=settings.meta_api_version,
                         access_token=token) as client:
            result = execute_fix(session_factory(engine), proposal_id=proposal.id, client=client,
                                 at=utcnow(), actor=approver, on_chunk=_progress)
        _print_result(result)
        if not result.finished or result.failed:
            raise typer.Exit(1)
    finally:
        engine.dispose()


def _progress(progress: ChunkProgress) -> None:
    typer.echo(f"  request {progress.seq + 1}/{progress.chunks}: {progress.status} "
               f"({progress.events} events)")


def register(app: typer.Typer) -> None:
    """Add the ``replay`` command to the CLI."""
    app.command("replay")(replay)
