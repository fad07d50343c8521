"""The fix graph: one run per proposal (thread id = proposal id).

    request_approval --approve/edit--> execute_fix -> verify_fix -> END
            \\--reject/expired/already decided--> END

``request_approval`` is the only node in capi-agent that asks a person (``interrupt()``); it does
nothing with side effects before the interrupt, because LangGraph re-runs a node from its top when it
resumes. The fix runs in ``execute_fix``, keyed by the proposal id, so resuming twice or re-running
after a crash never sends an event twice (``tools.fixes.execute``). Dependencies (database sessions,
Graph clients, the check re-run) come in through the run's ``FixContext``, never through the
checkpointed state, so a run can be resumed by a new process hours later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from sqlalchemy.orm import Session

from tools.checks.types import Finding
from tools.fixes.execute import execute_fix as run_fix
from tools.fixes.planner import decide, get_proposal
from tools.fixes.types import FixError, ProposalAlreadyDecided, ProposalExpired
from tools.fixes.verify import verify_fix as compare_findings
from tools.meta.client import GraphClient
from tools.meta.errors import MetaApiError
from tools.timeutil import parse_iso, to_iso, utcnow

FixAction = Literal["approve", "reject", "edit"]
FixOutcome = Literal["executed", "failed", "rejected", "expired", "already_decided", "pending"]


@dataclass(kw_only=True)
class FixContext:
    """Per-run dependencies of the fix graph (not checkpointed)."""

    session_factory: Callable[[], Session]
    client_for_pixel: Callable[[str], GraphClient | None]
    # (pixel_id, audit time, check names) -> findings of a fresh run of those checks.
    rerun_checks: Callable[[str, datetime, Sequence[str]], list[Finding]]
    clock: Callable[[], datetime] = utcnow
    # Fix kinds a policy approves without asking; empty by default (everything asks a person).
    auto_approve_kinds: frozenset[str] = field(default_factory=frozenset)
    # Events per request (Meta's maximum by default; smaller for tests and cautious first runs).
    batch_size: int = 1000


class FixState(TypedDict, total=False):
    proposal_id: str
    # The findings that raised the incident (JSON) and the audit time, for verification.
    before_findings: list[dict[str, Any]]
    audit_at: str
    decision: dict[str, Any]
    outcome: FixOutcome
    result: dict[str, Any]
    verification: dict[str, Any]
    error: str


class ApprovalRequest(TypedDict):
    """What ``interrupt()`` shows a person (Slack buttons, the terminal, the CLI's resume)."""

    type: Literal["fix_approval"]
    question: str
    proposal: dict[str, Any]  # id, pixel_id, incident_id, kind, params, preview, expires_at, created_by
    allowed_actions: list[str]
    edit_hint: str


class ApprovalAnswer(TypedDict, total=False):
    """What a person answers (``Command(resume=...)``): ``action`` is required; ``params`` only with
    ``edit`` (approve with narrower parameters)."""

    action: Literal["approve", "reject", "edit"]
    by: str
    params: dict[str, Any] | None


def approval_request(proposal_id: str, session: Session) -> ApprovalRequest:
    """The fixed JSON payload a person is shown: what is asked and what they may answer."""
    proposal = get_proposal(session, proposal_id)
    if proposal is None:
        raise FixError(f"no fix proposal {proposal_id}")
    return {
        "type": "fix_approval",
        "question": f"Run {proposal.kind} for pixel {proposal.pixel_id}?",
        "proposal": proposal.model_dump(mode="json", include={
            "id", "pixel_id", "incident_id", "kind", "params", "preview", "expires_at", "created_by"}),
        "allowed_actions": ["approve", "reject", "edit"],
        "edit_hint": "edit = approve with narrower params, e.g. {\"since\": ISO, \"until\": ISO, "
                     "\"event_names\": [...]}",
    }


# The nodes route with Command(goto=...): LangGraph reads the Literal of the return annotation for the
# graph's edges, and END is typed plain ``str``, so "__end__" (its value) is written out.
def request_approval(state: FixState,
                     runtime: Runtime[FixContext]) -> Command[Literal["execute_fix", "__end__"]]:
    ctx = runtime.context
    proposal_id = state["proposal_id"]
    with ctx.session_factory() as session:
        proposal = get_proposal(session, proposal_id)
        if proposal is None:
            return Command(goto="__end__", update={"outcome": "failed", "error": "proposal not found"})
        if proposal.status in ("approved", "executing"):  # resumed after a crash past the decision
            return Command(goto="execute_fix")
        if proposal.status != "proposed":
            outcome = "expired" if proposal.status == "expired" else "already_decided"
            return Command(goto="__end__", update={"outcome": outcome})
        if proposal.kind in ctx.auto_approve_kinds:
            answer: ApprovalAnswer = {"action": "approve", "by": "policy:auto-approve"}
        else:
            answer = interrupt(approval_request(proposal_id, session))
    action = answer.get("action")
    actor = str(answer.get("by") or "unknown")
    if action not in ("approve", "reject", "edit"):
        return Command(goto="__end__", update={"outcome": "failed", "error": f"unknown action {action!r}"})
    edit = answer.get("params") if action == "edit" else None
    decision = {"action": action, "by": actor, "at": to_iso(ctx.clock()), "params": edit}
    try:
        with ctx.session_factory() as session:
            decide(session, proposal_id=proposal_id, actor=actor,
                   decision="reject" if action == "reject" else "approve", at=ctx.clock(), edit_params=edit)
    except ProposalExpired:
        return Command(goto="__end__", update={"decision": decision, "outcome": "expired"})
    except ProposalAlreadyDecided:
        return Command(goto="__end__", update={"decision": decision, "outcome": "already_decided"})
    if action == "reject":
        return Command(goto="__end__", update={"decision": decision, "outcome": "rejected"})
    return Command(goto="execute_fix", update={"decision": decision})


def execute_fix(state: FixState, runtime: Runtime[FixContext]) -> Command[Literal["verify_fix", "__end__"]]:
    ctx = runtime.context
    proposal_id = state["proposal_id"]
    with ctx.session_factory() as session:
        proposal = get_proposal(session, proposal_id)
    assert proposal is not None  # request_approval checked it
    client = ctx.client_for_pixel(proposal.pixel_id)
    if client is None:
        return Command(goto="__end__", update={"outcome": "failed", "error": "no Meta access token for this pixel"})
    actor = (state.get("decision") or {}).get("by", "agent")
    try:
        with client:
            result = run_fix(ctx.session_factory, proposal_id=proposal_id, client=client, at=ctx.clock(),
                             actor=actor, batch_size=ctx.batch_size)
    except (FixError, MetaApiError) as exc:
        return Command(goto="__end__", update={"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]})
    update = {"result": result.model_dump(mode="json")}
    if not result.finished:
        return Command(goto="__end__", update={**update, "outcome": "pending"})
    return Command(goto="verify_fix", update=update)


def verify_fix(state: FixState, runtime: Runtime[FixContext]) -> dict[str, Any]:
    ctx = runtime.context
    before = [Finding.model_validate(f) for f in state.get("before_findings", [])]
    checks = sorted({f.check for f in before})
    with ctx.session_factory() as session:
        proposal = get_proposal(session, state["proposal_id"])
        assert proposal is not None
        audit_at = parse_iso(state["audit_at"]) if state.get("audit_at") else ctx.clock()
        verification = compare_findings(
            session, proposal_id=proposal.id, before=before, at=ctx.clock(),
            rerun=lambda: ctx.rerun_checks(proposal.pixel_id, audit_at, checks))
    return {"verification": verification.model_dump(mode="json"), "outcome": "executed"}


def build_fix_graph(*, checkpointer: BaseCheckpointSaver | None
                    ) -> CompiledStateGraph[FixState, FixContext, FixState, FixState]:
    """Compile the fix graph; a checkpointer is required for approvals that outlive the process."""
    graph = StateGraph(FixState, context_schema=FixContext)
    graph.add_node("request_approval", request_approval)
    graph.add_node("execute_fix", execute_fix)
    graph.add_node("verify_fix", verify_fix)
    graph.add_edge(START, "request_approval")
    graph.add_edge("verify_fix", END)
    return graph.compile(checkpointer=checkpointer)
