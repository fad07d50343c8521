"""The hourly audit graph, one run per pixel and audited hour.

    run_checks -> triage_incidents -> diagnose -> propose_fixes -> report

Checks, diagnosis rules, triage and storage are the deterministic steps of ``tools.audit``; the graph
adds the LLM's diagnosis (read-only tools, validated, with a deterministic fallback), narratives, and
fix proposals. A proposal starts its own fix-graph run (thread id = proposal id), which stops at the
approval interrupt; nothing runs before a person (or an explicit policy) approves it.

State is JSON only. The audit's in-memory inputs (hourly rollups, Meta reads) are kept in the run's
context so the diagnose node's drill-downs need no second read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from sqlalchemy.orm import Session

from agent.llm import LLMAdapter, Usage
from agent.reasoning.diagnose import diagnose_incident
from agent.reasoning.toolbox import build_toolbox
from tools.audit.report import audit_report
from tools.audit.runner import PixelAudit, check_and_diagnose, gather_inputs, not_judged, store_audit
from tools.checks.types import AuditInputs, Finding
from tools.diagnosis.recovery import recovery_judge
from tools.diagnosis.triage import triage
from tools.diagnosis.types import Incident, TriagedIncident
from tools.fixes.planner import propose_fix
from tools.ledger.incidents import open_incidents
from tools.ledger.pixels import PixelConfig
from tools.meta.client import GraphClient
from tools.timeutil import parse_iso, to_iso

ANNOUNCED = ("new", "escalated")


@dataclass(kw_only=True)
class AuditContext:
    """Per-run dependencies of the audit graph (not checkpointed)."""

    session_factory: Callable[[], Session]
    pixel: PixelConfig
    client: GraphClient | None
    adapter: LLMAdapter | None = None
    # Starts a fix-graph run for a new proposal (it stops at the approval interrupt) and returns the
    # approval request payload, or None when the proposal is auto-approved and already ran.
    start_fix: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    # Filled by run_checks for the later nodes of the same run.
    memo: dict[str, AuditInputs] = field(default_factory=dict)


class AuditState(TypedDict, total=False):
    pixel_id: str
    at: str
    window: dict[str, str]
    findings: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    triaged: list[dict[str, Any]]
    narratives: dict[str, str]
    diagnosis_sources: dict[str, str]
    proposals: list[dict[str, Any]]
    approval_requests: list[dict[str, Any]]
    tokens_used: int
    audit_id: int
    report: dict[str, Any]


def _inputs(state: AuditState, ctx: AuditContext) -> AuditInputs:
    key = state["at"]
    if key not in ctx.memo:  # a resumed run in a new process: read again
        with ctx.session_factory() as session:
            ctx.memo[key] = gather_inputs(session, pixel=ctx.pixel, at=parse_iso(key), client=ctx.client)
            session.commit()
    return ctx.memo[key]


def run_checks(state: AuditState, runtime: Runtime[AuditContext]) -> dict[str, Any]:
    inputs = _inputs(state, runtime.context)
    findings, incidents = check_and_diagnose(inputs)
    return {"window": {"start": to_iso(inputs.window_start), "end": to_iso(inputs.window_end)},
            "findings": [f.model_dump(mode="json") for f in findings],
            "incidents": [i.model_dump(mode="json") for i in incidents]}


def triage_incidents(state: AuditState, runtime: Runtime[AuditContext]) -> dict[str, Any]:
    incidents = [Incident.model_validate(i) for i in state.get("incidents", [])]
    with runtime.context.session_factory() as session:
        still_open = open_incidents(session, state["pixel_id"])
    recovered = recovery_judge(_inputs(state, runtime.context))
    return {"triaged": [t.model_dump(mode="json") for t in triage(incidents, still_open, recovered)]}


def evidence_key(incident: Incident, findings: dict[str, Finding]) -> str:
    """What the diagnosis was based on: the codes and events of the incident's findings."""
    return ",".join(sorted({f"{findings[fid].code}|{findings[fid].event_name or ''}"
                            for fid in incident.finding_ids if fid in findings}))


def diagnose(state: AuditState, runtime: Runtime[AuditContext]) -> dict[str, Any]:
    """Diagnosis of each incident. New and escalated ones, and ongoing ones whose evidence changed, are
    told by the LLM (or the offline reasoner); an ongoing incident with the same evidence keeps the
    root cause and story it was given, instead of being re-told by the rules every hour."""
    ctx = runtime.context
    findings = [Finding.model_validate(f) for f in state.get("findings", [])]
    by_finding = {f.id: f for f in findings}
    incidents = [Incident.model_validate(i) for i in state.get("incidents", [])]
    announced = {t["incident"]["id"] for t in state.get("triaged", []) if t["status"] in ANNOUNCED}
    with ctx.session_factory() as session:
        previous = {i.fingerprint: i for i in open_incidents(session, state["pixel_id"])}
    inputs = _inputs(state, ctx)
    toolbox = build_toolbox(inputs, findings, incidents)
    budget = ctx.adapter.new_budget() if ctx.adapter is not None else None
    window = (inputs.window_start, inputs.window_end)
    usage = Usage()
    narratives: dict[str, str] = {}
    sources: dict[str, str] = {}
    revised: list[Incident] = []
    for incident in incidents:
        key = evidence_key(incident, by_finding)
        before = previous.get(incident.fingerprint)
        if (incident.id not in announced and before is not None and before.narrative
                and before.evidence_key == key):
            kept = incident.model_copy(update={
                "root_cause": before.root_cause, "confidence": before.confidence, "summary": before.summary,
                "narrative": before.narrative, "diagnosed_by": before.diagnosed_by, "evidence_key": key})
            if before.root_cause != incident.root_cause:
                kept = kept.model_copy(update={"fixes": before.fixes})
            revised.append(kept)
            narratives[incident.id] = before.narrative
            sources[incident.id] = f"kept ({before.diagnosed_by or 'earlier audit'})"
            continue
        changed = before is not None and before.evidence_key != key
        adapter = ctx.adapter if incident.id in announced or changed else None
        outcome = diagnose_incident(incident=incident, findings=findings, toolbox=toolbox, adapter=adapter,
                                    budget=budget, pixel_id=incident.pixel_id, window=window)
        usage.add(outcome.usage)
        revised.append(outcome.incident.model_copy(update={
            "narrative": outcome.narrative, "diagnosed_by": outcome.source, "evidence_key": key}))
        narratives[incident.id] = outcome.narrative
        sources[incident.id] = outcome.source + (f" ({outcome.fallback_reason})" if outcome.fallback_reason
                                                 else "")
    triaged = [TriagedIncident.model_validate(t) for t in state.get("triaged", [])]
    by_id = {i.id: i for i in revised}
    triaged = [t.model_copy(update={"incident": by_id.get(t.incident.id, t.incident)}) for t in triaged]
    return {"incidents": [i.model_dump(mode="json") for i in revised], "narratives": narratives,
            "diagnosis_sources": sources, "tokens_used": usage.total,
            "triaged": [t.model_dump(mode="json") for t in triaged]}


def propose_fixes(state: AuditState, runtime: Runtime[AuditContext]) -> dict[str, Any]:
    """Store a proposal (with its preview) for each fix of a new or escalated incident that needs
    approval, and start its fix-graph run, which waits for a person."""
    ctx = runtime.context
    at = parse_iso(state["at"])
    findings = {f["id"]: f for f in state.get("findings", [])}
    proposals: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    for item in state.get("triaged", []):
        if item["status"] not in ANNOUNCED:
            continue
        incident = Incident.model_validate(item["incident"])
        for fix in incident.fixes:
            if fix.kind == "manual" or not fix.requires_approval:
                continue
            with ctx.session_factory() as session:
                proposal = propose_fix(session, pixel_id=incident.pixel_id, kind=fix.kind, params=fix.params,
                                       at=at, incident=incident)
            if proposal.preview.total_events == 0 and proposal.status == "proposed":
                continue  # nothing to send: not worth a person's click
            proposals.append({"id": proposal.id, "incident_id": incident.id, "kind": proposal.kind,
                              "status": proposal.status, "total_events": proposal.preview.total_events,
                              "requests": proposal.preview.requests})
            if ctx.start_fix is not None and proposal.status == "proposed":
                request = ctx.start_fix({
                    "proposal_id": proposal.id, "audit_at": state["at"],
                    "before_findings": [findings[fid] for fid in incident.finding_ids if fid in findings]})
                if request is not None:
                    requests.append(request)
    return {"proposals": proposals, "approval_requests": requests}


def report(state: AuditState, runtime: Runtime[AuditContext]) -> dict[str, Any]:
    ctx = runtime.context
    inputs = _inputs(state, ctx)
    audit = PixelAudit(
        pixel_id=state["pixel_id"], window_start=inputs.window_start, window_end=inputs.window_end,
        at=parse_iso(state["at"]), inputs=inputs,
        findings=[Finding.model_validate(f) for f in state.get("findings", [])],
        incidents=[Incident.model_validate(i) for i in state.get("incidents", [])],
        triaged=[TriagedIncident.model_validate(t) for t in state.get("triaged", [])],
        tokens_used=state.get("tokens_used", 0), not_judged=not_judged(inputs))
    body = audit_report([audit], window=(inputs.window_start, inputs.window_end),
                        narratives=state.get("narratives", {}))
    with ctx.session_factory() as session:
        audit_id = store_audit(session, audit, result={
            "diagnosis_sources": state.get("diagnosis_sources", {}), "proposals": state.get("proposals", []),
            "narratives": state.get("narratives", {}), "tokens_used": audit.tokens_used,
            # Kept with the audit: summaries read it to tell "not judged" from "healthy".
            "not_judged": body["pixels"][0].get("not_judged", [])})
        session.commit()
    return {"audit_id": audit_id, "report": body}


def build_audit_graph(*, checkpointer: BaseCheckpointSaver | None = None
                      ) -> CompiledStateGraph[AuditState, AuditContext, AuditState, AuditState]:
    graph = StateGraph(AuditState, context_schema=AuditContext)
    for name, node in (("run_checks", run_checks), ("triage_incidents", triage_incidents),
                       ("diagnose", diagnose), ("propose_fixes", propose_fixes), ("report", report)):
        graph.add_node(name, node)
    graph.add_edge(START, "run_checks")
    graph.add_edge("run_checks", "triage_incidents")
    graph.add_edge("triage_incidents", "diagnose")
    graph.add_edge("diagnose", "propose_fixes")
    graph.add_edge("propose_fixes", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=checkpointer)


def audit_thread_id(pixel_id: str, at: datetime) -> str:
    """A fresh thread per run: re-auditing the same hour is a new run, not a resume."""
    return f"audit:{pixel_id}:{to_iso(at)}:{uuid.uuid4().hex[:8]}"
