"""``capi-agent fixes list|show|release-uncertain|resume``: the fix proposals in the ledger.

``release-uncertain`` is the person's decision to resend events whose request was never answered
(after checking Events Manager): a trail entry under their name, then the events go out through the
proposal's fix run (the same path as Slack approvals and ``capi-agent replay``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from tools.timeutil import to_iso

fixes_app = typer.Typer(help="Fix proposals: list, show, release uncertain events, resume.",
                        no_args_is_help=True)

DATABASE_URL = typer.Option(None, "--database-url", help="SQLAlchemy URL (default: CAPI_DATABASE_URL)")
CONFIG = typer.Option(None, "--config", exists=True, dir_okay=False, help="pixels TOML (default: CAPI_CONFIG)")


def _actor(name: str) -> str:
    """A name given on the command line, as the trail names it (``cli:NAME`` unless it has a surface)."""
    name = name.strip()
    return name if ":" in name else f"cli:{name}"


@fixes_app.command("list")
def list_fixes(
    status: str | None = typer.Option(None, "--status", help="proposed, approved, executing, executed, "
                                                             "failed, rejected or expired"),
    pixel: str | None = typer.Option(None, "--pixel", help="only this pixel's proposals"),
    output: str = typer.Option("text", "--format", help="text or json"),
    database_url: str | None = DATABASE_URL,
    config: Path | None = CONFIG,
) -> None:
    """Fix proposals, newest first."""
    from agent.fix_ops import uncertain_counts
    from agent.wiring import open_wiring
    from tools.fixes.planner import list_proposals

    with open_wiring(database_url=database_url, config_file=config) as wiring, wiring.session() as session:
        proposals = list_proposals(session, pixel_id=pixel, status=status)
        uncertain = uncertain_counts(session)
    if output == "json":
        typer.echo(json.dumps([p.model_dump(mode="json", include={
            "id", "pixel_id", "incident_id", "kind", "status", "created_at", "expires_at", "created_by",
            "decided_by", "decided_at"}) | {"total_events": p.preview.total_events,
                                            "uncertain_chunks": uncertain.get(p.id, 0)} for p in proposals],
                              indent=2))
        return
    if not proposals:
        typer.echo("no fix proposals" + (f" with status {status}" if status else "")
                   + (f" for pixel {pixel}" if pixel else ""))
        return
    for p in proposals:
        decided = f" by {p.decided_by}" if p.decided_by else ""
        flag = f", {uncertain[p.id]} uncertain chunk(s)" if uncertain.get(p.id) else ""
        typer.echo(f"{p.id}  {p.pixel_id}  {p.kind:<20} {p.status}{decided}{flag}  "
                   f"{p.preview.total_events} events  created {to_iso(p.created_at)}")


@fixes_app.command("show")
def show_fix(
    proposal_id: str = typer.Argument(..., metavar="PROPOSAL", help="proposal id (fix_...)"),
    database_url: str | None = DATABASE_URL,
    config: Path | None = CONFIG,
) -> None:
    """One proposal: its preview, status, result, journal chunks and audit trail."""
    from sqlalchemy import select
    from sqlmodel import col

    from agent.commands.replay import print_preview
    from agent.wiring import open_wiring
    from tools.fixes.models import FixChunk
    from tools.fixes.planner import get_proposal
    from tools.fixes.trail import trail

    with open_wiring(database_url=database_url, config_file=config) as wiring, wiring.session() as session:
        proposal = get_proposal(session, proposal_id)
        if proposal is None:
            typer.echo(f"error: no fix proposal {proposal_id}", err=True)
            raise typer.Exit(2)
        chunks = session.scalars(select(FixChunk).where(col(FixChunk.proposal_id) == proposal_id)
                                 .order_by(col(FixChunk.seq))).all()
        entries = trail(session, proposal_id)
        typer.echo(f"{proposal.id}: {proposal.kind} for pixel {proposal.pixel_id}, {proposal.status}")
        typer.echo(f"  created {to_iso(proposal.created_at)} by {proposal.created_by}, "
                   f"expires {to_iso(proposal.expires_at)}"
                   + (f", incident {proposal.incident_id}" if proposal.incident_id else ""))
        if proposal.decided_by:
            typer.echo(f"  decided by {proposal.decided_by} at "
                       f"{to_iso(proposal.decided_at) if proposal.decided_at else '?'}")
        typer.echo(f"  params {json.dumps(proposal.params, sort_keys=True)}")
        typer.echo("preview:")
        print_preview(proposal.preview)
        if proposal.result is not None:
            r = proposal.result
            typer.echo(f"result: sent {r.sent}, received by Meta {r.received}, skipped {r.skipped}, "
                       f"failed {r.failed}, uncertain {r.uncertain}, requests {r.requests}"
                       + ("" if r.finished else " (not finished)"))
        if proposal.verification is not None:
            typer.echo(f"verification: {proposal.verification.summary}")
        if chunks:
            typer.echo("chunks:")
        for chunk in chunks:
            error = f", error {chunk.error_key}" if chunk.error_key else ""
            typer.echo(f"  #{chunk.seq} {chunk.status}: {len(chunk.event_ids)} planned, {len(chunk.sent_ids)} "
                       f"sent, {chunk.received} received, {chunk.requests} request(s){error}")
        if any(chunk.status == "uncertain" for chunk in chunks):
            typer.echo(f"  uncertain chunks are not resent automatically: check Events Manager, then run "
                       f"capi-agent fixes release-uncertain {proposal_id} --by NAME")
        typer.echo("trail:")
        for entry in entries:
            typer.echo(f"  {to_iso(entry.at)}  {entry.actor:<20} {entry.action}  {_detail(entry.detail)}")


def _detail(detail: dict[str, Any]) -> str:
    text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."


@fixes_app.command("release-uncertain")
def release_uncertain_command(
    proposal_id: str = typer.Argument(..., metavar="PROPOSAL", help="proposal id (fix_...)"),
    by: str = typer.Option(..., "--by", help="who checked Meta and decides to resend (recorded in the trail)"),
    yes: bool = typer.Option(False, "--yes", help="resend without asking"),
    database_url: str | None = DATABASE_URL,
    config: Path | None = CONFIG,
) -> None:
    """Resend a fix's uncertain events (check Events Manager first: Meta may already have them)."""
    from agent.commands.replay import print_outcome
    from agent.fix_ops import release_and_resend, release_text, uncertain_chunks
    from agent.wiring import open_agent, open_wiring
    from tools.fixes.planner import get_proposal

    actor = _actor(by)
    if actor.endswith(":"):
        typer.echo("error: --by needs a name", err=True)
        raise typer.Exit(2)
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        with wiring.session() as session:
            proposal = get_proposal(session, proposal_id)
            chunks = uncertain_chunks(session, proposal_id) if proposal is not None else {}
        if proposal is None:
            typer.echo(f"error: no fix proposal {proposal_id}", err=True)
            raise typer.Exit(2)
        if not chunks:
            typer.echo(f"{proposal_id} has no uncertain events (it is {proposal.status}): nothing to release")
            return
        typer.echo(f"{proposal_id}: {sum(chunks.values())} uncertain event(s) in chunk(s) "
                   f"{', '.join(f'#{seq}' for seq in chunks)}; Meta may or may not have them.")
        if not (yes or typer.confirm(f"Resend them to Meta, recorded as {actor}?", default=False)):
            typer.echo("not released: nothing sent")
            raise typer.Exit(1)
        with open_agent(wiring) as services:
            outcome = release_and_resend(services, proposal_id, actor=actor)
    if not outcome.released:
        typer.echo(f"error: {release_text(outcome)}", err=True)
        raise typer.Exit(2)
    typer.echo(f"released chunk(s) {', '.join(f'#{seq}' for seq in outcome.released)} by {actor}; "
               f"{proposal_id} is {outcome.status}")
    print_outcome(outcome.state, proposal_id)
    if outcome.outcome != "executed":
        raise typer.Exit(1)


@fixes_app.command("resume")
def resume_fix(
    proposal_id: str = typer.Argument(..., metavar="PROPOSAL", help="proposal id (fix_...)"),
    database_url: str | None = DATABASE_URL,
    config: Path | None = CONFIG,
) -> None:
    """Go on with an approved fix that paused (rate limited, Meta unreachable, interrupted)."""
    from agent.commands.replay import print_outcome
    from agent.wiring import open_agent, open_wiring
    from tools.fixes.planner import get_proposal

    with open_wiring(database_url=database_url, config_file=config) as wiring:
        with wiring.session() as session:
            proposal = get_proposal(session, proposal_id)
        if proposal is None:
            typer.echo(f"error: no fix proposal {proposal_id}", err=True)
            raise typer.Exit(2)
        if proposal.status not in ("approved", "executing"):
            typer.echo(f"{proposal_id} is {proposal.status}: nothing to resume")
            return
        with open_agent(wiring) as services:
            state = services.resolve_fix(proposal_id, action="approve", by=proposal.decided_by or "agent")
    print_outcome(state, proposal_id)
    if state.get("outcome") != "executed":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``fixes`` command group to the CLI."""
    app.add_typer(fixes_app, name="fixes")
