"""The agent as the Slack layer sees it: ``SlackAgent`` implements ``agent.slack.port.AgentPort`` over
the agent's services (``agent.agent_services.AgentServices``, opened by ``agent.wiring.open_agent``).

Approvals resume the proposal's fix run (``AgentServices.resolve_fix``); questions go to the chat
graph with the pixel's latest audit as context; slash commands read the ledger. Texts returned here
are plain: the Slack layer escapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.agent_services import AgentServices
from agent.graphs.chat import ChatGraphContext, chat_input
from agent.reasoning.context import ChatContext
from agent.slack.port import DecisionOutcome, DecisionStatus, WeeklyView
from agent.summary.collect import build_summary, latest_hour, not_judged_of
from agent.summary.model import Summary
from tools.audit.runner import cached_inputs, pixel_status
from tools.fixes.planner import get_proposal, list_proposals, propose_fix
from tools.ledger.incidents import load_findings, open_incidents
from tools.ledger.models import Audit
from tools.ledger.outbox import incident_posts, thread_origin
from tools.timeutil import HOUR, as_utc, to_iso

OUTCOMES: dict[str, DecisionStatus] = {"executed": "approved_executed", "failed": "approved_failed",
                                       "pending": "approved_failed", "rejected": "rejected", "expired": "expired",
                                       "already_decided": "already_decided", "not_waiting": "already_decided",
                                       "not_found": "not_found"}
SLACK_ACTOR = "slack:"  # how a Slack user is named in the fix audit trail


def result_summary(state: dict[str, Any]) -> str | None:
    parts = []
    if state.get("result"):
        r = state["result"]
        parts.append(f"sent {r['sent']}, Meta received {r['received']}, skipped {r['skipped']}, failed {r['failed']}")
        if r.get("uncertain"):
            parts.append(f"{r['uncertain']} event(s) uncertain (Meta never answered): check Events Manager, then "
                         f"/capi release {state.get('proposal_id', 'PROPOSAL')} to resend them")
        if not r.get("finished", True):
            parts.append("paused (rate limit or Meta unavailable): it resumes on the next approval check")
    if state.get("verification"):
        parts.append(f"verification: {state['verification']['summary']}")
    if state.get("error"):
        parts.append("the fix could not run; see the capi-agent log")
    return "; ".join(parts) or None


def _latest_audit(session: Session, pixel_id: str) -> Audit | None:
    """The pixel's most recent audit: its latest hour, and of that hour the latest run."""
    return session.scalars(select(Audit).where(col(Audit.pixel_id) == pixel_id)
                           .order_by(col(Audit.window_end).desc(), col(Audit.id).desc())).first()


@dataclass
class SlackAgent:
    services: AgentServices
    approvers: frozenset[str]
    clock: Callable[[], datetime] | None = None

    def now(self) -> datetime:
        return (self.clock or self.services.clock)()

    # --- approvals --------------------------------------------------------------------------------

    def decide(self, *, proposal_id: str, user_id: str,
               decision: Literal["approve", "reject"]) -> DecisionOutcome:
        if user_id not in self.approvers:  # the Slack layer checks first; this is defence in depth
            return DecisionOutcome(status="not_allowed", message="Only approvers can decide on fixes.",
                                   proposal_id=proposal_id)
        state = self.services.resolve_fix(proposal_id, action=decision, by=f"{SLACK_ACTOR}{user_id}")
        outcome = state.get("outcome", "failed")
        status = OUTCOMES.get(outcome, "approved_failed")
        if status == "already_decided":
            return self._already_decided(proposal_id)
        messages = {
            "approved_executed": "Approved and executed.", "approved_failed": "Approved, but the fix did not finish.",
            "rejected": "Rejected; nothing was sent.", "expired": "This proposal expired; ask for a new audit.",
            "not_found": "No such proposal."}
        return DecisionOutcome(status=status, message=messages[status], proposal_id=proposal_id,
                               decided_by=user_id if status in ("approved_executed", "approved_failed", "rejected")
                               else None, decided_at=self.now(), result_summary=result_summary(state))

    def _already_decided(self, proposal_id: str) -> DecisionOutcome:
        """Who decided first and when (the Slack layer mentions a Slack decider as ``<@U...>``)."""
        with self.services.wiring.session() as session:
            proposal = get_proposal(session, proposal_id)
        actor = proposal.decided_by if proposal is not None else None
        slack_user = actor.removeprefix(SLACK_ACTOR) if actor and actor.startswith(SLACK_ACTOR) else None
        status = f" ({proposal.status})" if proposal is not None else ""
        message = (f"This proposal was already decided by {actor}{status}." if actor and slack_user is None
                   else f"This proposal was already decided{status}.")
        return DecisionOutcome(status="already_decided", message=message, proposal_id=proposal_id,
                               decided_by=slack_user,
                               decided_at=proposal.decided_at if proposal is not None else None)

    # --- chat ---------------------------------------------------------------------------------------

    def chat_context(self, pixel_id: str | None) -> ChatContext:
        pixels = self.services.wiring.pixels()
        if pixel_id is None and len(pixels) == 1:
            pixel_id = pixels[0].id
        if pixel_id is None:
            return ChatContext(pixel_id=None)
        pixel = self.services.pixel(pixel_id)
        with self.services.wiring.session() as session:
            audit = _latest_audit(session, pixel_id)
            if audit is None:
                return ChatContext(pixel_id=pixel_id)
            assert audit.id is not None  # a stored row
            inputs = cached_inputs(session, pixel=pixel, at=as_utc(audit.window_end))
            proposals = [p.model_dump(mode="json", include={"id", "kind", "status", "incident_id", "created_at"})
                         | {"since": to_iso(p.preview.since), "until": to_iso(p.preview.until),
                            "event_names": p.preview.event_names, "summary": f"{p.preview.total_events} events"}
                         for p in list_proposals(session, pixel_id=pixel_id, status="proposed")]
            return ChatContext(pixel_id=pixel_id, inputs=inputs, findings=load_findings(session, audit_id=audit.id),
                               incidents=open_incidents(session, pixel_id), proposals=proposals,
                               narratives=dict((audit.result or {}).get("narratives", {})))

    def propose_from_chat(self, pixel_id: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def propose(request: dict[str, Any]) -> dict[str, Any]:
            if pixel_id is None:
                raise ValueError("no pixel in this conversation")
            params = {k: request[k] for k in ("since", "until", "event_names") if request.get(k)}
            with self.services.wiring.session() as session:
                proposal = propose_fix(session, pixel_id=pixel_id, kind=request["kind"], params=params,
                                       at=self.now(), created_by="chat")
            self.services.start_fix({"proposal_id": proposal.id, "audit_at": to_iso(self.now())})
            return {"id": proposal.id, "kind": proposal.kind, "status": proposal.status,
                    "total_events": proposal.preview.total_events}
        return propose

    def answer(self, *, conversation_id: str, question: str, user_id: str, pixel_id: str | None) -> str:
        context = ChatGraphContext(adapter=self.services.adapter, load_context=self.chat_context,
                                   propose=self.propose_from_chat(pixel_id))
        state = self.services.chat_graph().invoke(chat_input(question, pixel_id),
                                                  {"configurable": {"thread_id": conversation_id}}, context=context)
        return str(state.get("answer") or "I have no answer to that yet.")

    # --- slash commands ----------------------------------------------------------------------------

    def status_text(self, *, pixel_id: str | None) -> str:
        pixels = self.services.wiring.pixels([pixel_id] if pixel_id else None)
        lines = []
        with self.services.wiring.session() as session:
            for pixel in pixels:
                audit = _latest_audit(session, pixel.id)
                incidents = open_incidents(session, pixel.id)
                if audit is None:
                    lines.append(f"pixel {pixel.id}: not audited yet")
                    continue
                assert audit.id is not None  # a stored row
                status = pixel_status(load_findings(session, audit_id=audit.id))
                lines.append(f"pixel {pixel.id}: {status} (last audit {to_iso(audit.window_end)}), "
                             f"{len(incidents)} open incident(s)")
                lines += [f"  - {i.root_cause} ({i.severity}): {i.summary}" for i in incidents]
                thin = not_judged_of(audit.result, pixel.id)
                if thin:
                    named = ", ".join(f"{n.get('event_name') or 'all events'} ({n.get('source')})" for n in thin[:6])
                    more = f" and {len(thin) - 6} more" if len(thin) > 6 else ""
                    lines.append(f"  not judged: {named}{more}: {thin[0].get('reason')}")
        return "\n".join(lines) or "No pixels configured."

    def run_audit_text(self, *, pixel_id: str | None) -> str:
        from agent.commands.audit import render_text

        pixels = self.services.wiring.pixels([pixel_id] if pixel_id else None)
        return render_text(self.services.audit_round(pixels, self.now()))

    def fixes_text(self) -> str:
        with self.services.wiring.session() as session:
            waiting = list_proposals(session, status="proposed")
        if not waiting:
            return "No fix is waiting for approval."
        return "\n".join(f"{p.id}: {p.kind} on pixel {p.pixel_id}, {p.preview.total_events} events "
                         f"({to_iso(p.preview.since)} -> {to_iso(p.preview.until)}), expires {to_iso(p.expires_at)}"
                         for p in waiting)

    def release_uncertain_text(self, *, proposal_id: str, user_id: str) -> str:
        from agent.fix_ops import release_and_resend, release_text

        if user_id not in self.approvers:  # the Slack layer checks first; this is defence in depth
            return "Only approvers can release uncertain events."
        return release_text(release_and_resend(self.services, proposal_id, actor=f"{SLACK_ACTOR}{user_id}"))

    def latest_summary(self, *, pixel_id: str | None, channel: str | None) -> Summary | None:
        pixels = self.services.wiring.pixels([pixel_id] if pixel_id else None)
        if pixel_id is None and channel is not None:
            pixels = [p for p in pixels if p.slack_channel == channel] or pixels
        with self.services.wiring.session() as session:
            end = latest_hour(session, pixel_ids=[p.id for p in pixels])
            if end is None:
                return None
            zone = min(pixels, key=lambda p: p.id).timezone
            return build_summary(session, pixels=pixels, start=end - HOUR, end=end, timezone=zone)

    def weekly_report(self, *, pixel_id: str | None, channel: str | None) -> WeeklyView | None:
        from agent.slack.summary_blocks import thread_link
        from agent.summary.weekly import build_weekly, week_end_at
        from agent.summary.weekly_text import SLACK_DETAILED

        pixels = self.services.wiring.pixels([pixel_id] if pixel_id else None)
        if pixel_id is None and channel is not None:
            pixels = [p for p in pixels if p.slack_channel == channel] or pixels
        if not pixels:
            return None
        # The week and time zone follow the first pixel, as the channel's weekly post does.
        first = min(pixels, key=lambda p: p.id)
        end = week_end_at(self.now(), timezone=first.timezone, weekday=first.weekly_day, hour=first.weekly_hour)
        with self.services.wiring.session() as session:
            report = build_weekly(session, pixels=pixels, end=end, timezone=first.timezone)
            ids = [i.id for pixel in report.pixels[:SLACK_DETAILED] for i in pixel.open_incidents]
            links = {incident_id: thread_link(posted_in, ts)
                     for incident_id, (posted_in, ts) in incident_posts(session, ids).items()}
        return WeeklyView(report=report, links=links)

    def pixel_for_thread(self, *, channel: str, thread_ts: str) -> str | None:
        with self.services.wiring.session() as session:
            origin = thread_origin(session, channel=channel, ts=thread_ts)
        return origin.pixel_id if origin is not None else None


