"""The agent's services over one wiring: audits through the audit graph, fix approvals through the
fix graph, and chat through the chat graph. Opened by ``agent.wiring.open_agent``; the CLI, the demo,
the eval, the scheduler and Slack all go through this one object, so an approval given in Slack, at the
terminal or hours later after a restart resumes the same run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from agent.announce import enqueue_audit_notifications, enqueue_summaries
from agent.graphs.audit import AuditContext, audit_thread_id, build_audit_graph
from agent.graphs.chat import build_chat_graph
from agent.graphs.fix import ApprovalAnswer, FixContext, build_fix_graph
from agent.llm import LLMAdapter
from agent.wiring import AgentWiring
from tools.audit.meta_side import start_prefetch
from tools.audit.runner import gather_inputs
from tools.checks.registry import run_checks
from tools.checks.types import Finding
from tools.fixes.planner import get_proposal
from tools.ledger.pixels import PixelConfig
from tools.meta.client import GraphClient
from tools.timeutil import audit_window, parse_iso, to_iso, utcnow

Decision = Literal["approve", "reject", "edit"]  # ApprovalAnswer["action"]


@dataclass
class AgentServices:
    wiring: AgentWiring
    checkpointer: BaseCheckpointSaver
    adapter: LLMAdapter | None = None
    clock: Callable[[], datetime] = utcnow
    auto_approve_kinds: frozenset[str] = frozenset()
    # Overrides how Graph clients are made (tests, the demo's simulator); default: the wiring's.
    client_factory: Callable[[PixelConfig], GraphClient | None] | None = None
    _graphs: dict[str, Any] = field(default_factory=dict)

    # --- wiring ---------------------------------------------------------------------------------

    def client_for(self, pixel: PixelConfig) -> GraphClient | None:
        factory = self.client_factory or self.wiring.graph_client
        return factory(pixel)

    def pixel(self, pixel_id: str) -> PixelConfig:
        return self.wiring.pixels([pixel_id])[0]

    def fix_graph(self) -> Any:
        if "fix" not in self._graphs:
            self._graphs["fix"] = build_fix_graph(checkpointer=self.checkpointer)
        return self._graphs["fix"]

    def audit_graph(self) -> Any:
        if "audit" not in self._graphs:
            self._graphs["audit"] = build_audit_graph(checkpointer=self.checkpointer)
        return self._graphs["audit"]

    def chat_graph(self) -> Any:
        if "chat" not in self._graphs:
            self._graphs["chat"] = build_chat_graph(checkpointer=self.checkpointer)
        return self._graphs["chat"]

    def rerun_checks(self, pixel_id: str, at: datetime, checks: Sequence[str]) -> list[Finding]:
        """A fresh read of both sides and a re-run of the named checks (fix verification)."""
        pixel = self.pixel(pixel_id)
        client = self.client_for(pixel)
        try:
            with self.wiring.session() as session:
                inputs = gather_inputs(session, pixel=pixel, at=at, client=client)
                session.commit()
        finally:
            if client is not None:
                client.close()
        return run_checks(inputs, only=list(checks) or None)

    def fix_context(self) -> FixContext:
        return FixContext(session_factory=self.wiring.session,
                          client_for_pixel=lambda pid: self.client_for(self.pixel(pid)),
                          rerun_checks=self.rerun_checks, clock=self.clock,
                          auto_approve_kinds=self.auto_approve_kinds)

    # --- fixes ----------------------------------------------------------------------------------

    def start_fix(self, fix_input: dict[str, Any]) -> dict[str, Any] | None:
        """Start a proposal's fix run; returns its approval request (the interrupt payload), or None
        when it did not stop for one (auto-approved policy, or already decided)."""
        result = self.fix_graph().invoke(fix_input, config=_thread(fix_input["proposal_id"]),
                                         context=self.fix_context())
        interrupts = result.get("__interrupt__") or []
        return interrupts[0].value if interrupts else None

    def pending_request(self, proposal_id: str) -> dict[str, Any] | None:
        """The approval a proposal's run is waiting for, if it is waiting."""
        snapshot = self.fix_graph().get_state(_thread(proposal_id))
        for task in snapshot.tasks:
            for item in task.interrupts:
                return item.value
        return None

    def resolve_fix(self, proposal_id: str, *, action: Decision, by: str,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer a proposal's approval request and run it to the end (execute, verify).

        A proposal that is no longer waiting (decided, expired, executed) is not resumed: the answer
        says why, and nothing runs a second time."""
        with self.wiring.session() as session:
            proposal = get_proposal(session, proposal_id)
        if proposal is None:
            return {"outcome": "not_found", "proposal_id": proposal_id}
        if proposal.status != "proposed" or self.pending_request(proposal_id) is None:
            if proposal.status in ("approved", "executing"):
                # Decided but not finished (a crash mid-run): finish it, idempotently.
                state = self.fix_graph().invoke(
                    {"proposal_id": proposal_id}, config=_thread(proposal_id), context=self.fix_context())
                return {**state, "proposal_id": proposal_id}
            status = proposal.status
            outcome = "expired" if status == "expired" else "not_waiting" if status == "proposed" else \
                "already_decided"
            return {"outcome": outcome, "proposal_id": proposal_id, "status": status,
                    "decided_by": proposal.decided_by}
        answer: ApprovalAnswer = {"action": action, "by": by}
        if params:
            answer["params"] = params
        state = self.fix_graph().invoke(Command(resume=answer), config=_thread(proposal_id),
                                        context=self.fix_context())
        return {**state, "proposal_id": proposal_id}

    # --- audits ---------------------------------------------------------------------------------

    def audit_pixel(self, pixel: PixelConfig, at: datetime) -> dict[str, Any]:
        """One pixel's audit through the graph; returns the final graph state (report inside).

        Whoever runs the audit (scheduler, CLI, ``/capi audit``), its new, escalated and resolved
        incidents are queued for the pixel's Slack channel in the same breath: an audit that opened an
        incident without announcing it would leave the next audit to see it as "ongoing", i.e. silent."""
        client = self.client_for(pixel)
        try:
            context = AuditContext(session_factory=self.wiring.session, pixel=pixel, client=client,
                                   adapter=self.adapter, start_fix=self.start_fix)
            state = self.audit_graph().invoke({"pixel_id": pixel.id, "at": to_iso(at)},
                                              config=_thread(audit_thread_id(pixel.id, at)), context=context)
        finally:
            if client is not None:
                client.close()
        with self.wiring.session() as session:
            enqueue_audit_notifications(session, pixel=pixel, state=state)
            session.commit()
        # Then the hour's summaries of every channel this audit completed (once per channel and hour).
        try:
            with self.wiring.session() as session:
                enqueue_summaries(session, pixels=self.wiring.pixels(),
                                  hours=[parse_iso(state["report"]["window"]["end"])])
                session.commit()
        except Exception as exc:  # the audit stands; the scheduler's sweep queues the summary later
            logging.getLogger(__name__).warning("queueing the summaries of pixel %s failed: %s", pixel.id,
                                                type(exc).__name__)
        return state

    def audit_round(self, pixels: Sequence[PixelConfig], at: datetime) -> dict[str, Any]:
        """All pixels' audits merged into one report (the ``capi-agent audit --format json`` contract)."""
        start, end = audit_window(at)
        merged: dict[str, Any] = {"window": {"start": to_iso(start), "end": to_iso(end)}, "pixels": [],
                                  "findings": [], "incidents": [], "resolved": [], "proposals": [],
                                  "tokens_used": 0}
        # As in the scheduler's round: Meta's side of every pixel is read in the background while
        # the audits run, each audit waiting for its own pixel's read (Meta takes 100-300 ms a call,
        # several calls a pixel, which one after another cost more than the audits themselves).
        run = (start_prefetch(self.wiring.session, [(pixel, at) for pixel in pixels], client_for=self.client_for)
               if len(pixels) > 1 else None)
        try:
            for pixel in pixels:
                if run is not None:
                    run.wait_for(pixel.id)
                state = self.audit_pixel(pixel, at)
                report = state["report"]
                for key in ("pixels", "findings", "incidents", "resolved"):
                    merged[key].extend(report.get(key, []))
                merged["proposals"].extend(state.get("proposals", []))
                merged["tokens_used"] += state.get("tokens_used", 0)
        finally:
            if run is not None:
                prefetch = run.join()
                if prefetch is not None:
                    prefetch.discard()  # reads no audit took (an audit that failed): read again next time
        return merged


def _thread(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}
