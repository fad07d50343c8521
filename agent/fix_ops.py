"""Operations on fix proposals shared by the CLI (``capi-agent fixes ...``) and Slack (``/capi release``).

Releasing uncertain chunks is a person's decision (they checked in Events Manager that Meta did not
get those events): it is recorded in the fix trail under their name (``tools.fixes.execute.
release_uncertain``), and the released events are then sent through the proposal's fix run
(``AgentServices.resolve_fix``), the same path as every other fix: same token, same journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.agent_services import AgentServices
from tools.fixes.execute import release_uncertain
from tools.fixes.models import FixChunk
from tools.fixes.planner import get_proposal


@dataclass(frozen=True)
class ReleaseOutcome:
    """``outcome``: ``not_found``, ``unknown_pixel``, ``no_token``, ``nothing_uncertain`` (nothing
    released), or the fix run's outcome after the release."""

    proposal_id: str
    outcome: str
    released: list[int] = field(default_factory=list)
    status: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


def uncertain_chunks(session: Session, proposal_id: str) -> dict[int, int]:
    """Chunk seq -> events in it, for the chunks of a proposal marked uncertain."""
    chunks = session.scalars(select(FixChunk).where(col(FixChunk.proposal_id) == proposal_id,
                                                    col(FixChunk.status) == "uncertain")
                             .order_by(col(FixChunk.seq)))
    return {chunk.seq: len(chunk.sent_ids) for chunk in chunks}


def uncertain_counts(session: Session) -> dict[str, int]:
    """Proposal id -> number of uncertain chunks, for proposals that have any."""
    rows = session.execute(select(col(FixChunk.proposal_id), func.count()).where(
        col(FixChunk.status) == "uncertain").group_by(col(FixChunk.proposal_id))).all()
    return {proposal_id: int(count) for proposal_id, count in rows}


def release_and_resend(services: AgentServices, proposal_id: str, *, actor: str) -> ReleaseOutcome:
    """Release a proposal's uncertain chunks (trail entry by ``actor``) and send them through its fix run."""
    with services.wiring.session() as session:
        proposal = get_proposal(session, proposal_id)
        if proposal is None:
            return ReleaseOutcome(proposal_id=proposal_id, outcome="not_found")
        # Nothing is released that could not be sent right away (it would wait, planned, for a resume).
        try:
            pixel = services.pixel(proposal.pixel_id)
        except KeyError:
            return ReleaseOutcome(proposal_id=proposal_id, outcome="unknown_pixel", status=proposal.status)
        if services.client_factory is None and services.wiring.pixel_token(pixel) is None:
            return ReleaseOutcome(proposal_id=proposal_id, outcome="no_token", status=proposal.status)
        released = release_uncertain(session, proposal_id=proposal_id, actor=actor, at=services.clock())
    if not released:
        return ReleaseOutcome(proposal_id=proposal_id, outcome="nothing_uncertain", status=proposal.status)
    # The proposal is ``executing`` again: its fix run resumes with the released chunks.
    state = services.resolve_fix(proposal_id, action="approve", by=actor)
    with services.wiring.session() as session:
        after = get_proposal(session, proposal_id)
    return ReleaseOutcome(proposal_id=proposal_id, outcome=str(state.get("outcome", "failed")),
                          released=released, status=after.status if after else None, state=state)


def release_text(outcome: ReleaseOutcome) -> str:
    """A plain one-paragraph account of a release (the Slack layer escapes it)."""
    if outcome.outcome == "not_found":
        return f"No fix proposal {outcome.proposal_id}."
    if outcome.outcome == "unknown_pixel":
        return f"{outcome.proposal_id} is for a pixel this agent does not know: nothing released."
    if outcome.outcome == "no_token":
        return f"No Meta access token for the pixel of {outcome.proposal_id}: nothing released."
    if outcome.outcome == "nothing_uncertain":
        return f"{outcome.proposal_id} has no uncertain events to release (it is {outcome.status})."
    text = f"Released {len(outcome.released)} uncertain chunk(s) of {outcome.proposal_id} and resent them"
    result = outcome.state.get("result")
    if result:
        text += (f": sent {result['sent']}, Meta received {result['received']}, failed {result['failed']}, "
                 f"uncertain {result['uncertain']}")
    if outcome.state.get("error"):
        text += f"; the fix could not run: {outcome.state['error']}"
    return text + f" (now {outcome.status})."
