"""Diagnosis of one incident by the LLM, checked against the catalogue, with an offline fallback.

The deterministic incident (tools.diagnosis) is the starting point and the fallback. The model may
confirm it or pick another root cause, citing findings; its answer is validated and, when the cause
changes, the fixes are re-derived from the catalogue (the model never writes a fix). The incident's
id and fingerprint stay those of the deterministic grouping, so that triage recognises the same
problem hour after hour whatever the model says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import prompts
from agent.llm import LLMAdapter, LLMUnavailable, TokenBudget, Usage
from agent.reasoning.answer import DiagnosisAnswer, InvalidAnswer, parse_answer
from agent.reasoning.offline import narrate
from agent.reasoning.render import (
    catalogue_text,
    finding_brief,
    findings_for_prompt,
    fix_kinds_text,
    incident_brief,
    to_json,
)
from agent.reasoning.slack_text import slack_safe
from agent.reasoning.toolbox import Toolbox
from tools.checks.types import SEVERITY_RANK, Finding
from tools.diagnosis.catalogue import cause_info
from tools.diagnosis.fixes import suggest_fixes
from tools.diagnosis.types import FixSuggestion, Incident
from tools.timeutil import to_iso

log = logging.getLogger(__name__)

NARRATIVE_MAX_CHARS = 700


@dataclass
class DiagnosisOutcome:
    """The incident as finally diagnosed and how: ``llm`` (validated model answer), ``offline`` (no
    model configured) or ``fallback`` (the model failed or answered badly; ``fallback_reason``)."""

    incident: Incident
    narrative: str
    source: Literal["llm", "offline", "fallback"]
    cited_finding_ids: list[str]
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[str] = field(default_factory=list)
    fallback_reason: str | None = None


def diagnose_incident(
    *,
    incident: Incident,
    findings: Sequence[Finding],
    toolbox: Toolbox,
    adapter: LLMAdapter | None,
    budget: TokenBudget | None,
    pixel_id: str,
    window: tuple[datetime, datetime],
) -> DiagnosisOutcome:
    """Diagnoses ``incident`` (never raises for LLM trouble: falls back to the deterministic one)."""
    if adapter is None:
        return _deterministic(incident, findings, "offline", None)
    shown = findings_for_prompt(findings, incident.finding_ids)
    system = prompts.render("diagnose_system", catalogue=catalogue_text(), fix_kinds=fix_kinds_text())
    user = prompts.render(
        "diagnose_user", pixel=pixel_id, window=f"{to_iso(window[0])} .. {to_iso(window[1])}",
        findings=to_json([finding_brief(f) for f in shown]), diagnosis=to_json(incident_brief(incident)),
    )
    try:
        result = adapter.run_tool_loop(system=system, user=user, tools=toolbox.specs,
                                       execute_tool=toolbox.execute,
                                       budget=budget if budget is not None else adapter.new_budget())
    except LLMUnavailable as exc:
        log.warning("diagnosis of %s falls back: %s", incident.id, exc.reason)
        return _deterministic(incident, findings, "fallback", f"llm_unavailable:{exc.reason}")
    calls = [record.name for record in result.tool_calls]
    if result.stopped == "budget" or result.content is None:
        outcome = _deterministic(incident, findings, "fallback", "budget_exhausted")
    else:
        try:
            answer = parse_answer(result.content, known_finding_ids={f.id for f in findings})
            outcome = _apply(incident, findings, answer, toolbox)
        except InvalidAnswer as exc:
            log.warning("diagnosis of %s falls back: invalid answer (%s)", incident.id, exc)
            outcome = _deterministic(incident, findings, "fallback", f"invalid_answer:{exc}")
    outcome.usage = result.usage
    outcome.tool_calls = calls
    return outcome


def _deterministic(incident: Incident, findings: Sequence[Finding], source: Literal["offline", "fallback"],
                   reason: str | None) -> DiagnosisOutcome:
    return DiagnosisOutcome(incident=incident, narrative=narrate(incident, findings), source=source,
                            cited_finding_ids=list(incident.finding_ids), fallback_reason=reason)


def _apply(incident: Incident, findings: Sequence[Finding], answer: DiagnosisAnswer,
           toolbox: Toolbox) -> DiagnosisOutcome:
    """The incident updated by a valid answer. Raises InvalidAnswer when the model dismisses a real
    incident as ``none`` (an injected "all is fine" must not hide an outage)."""
    if answer.root_cause == "none" and incident.root_cause != "none":
        raise InvalidAnswer("dismissed_incident")
    narrative = slack_safe(answer.narrative, limit=NARRATIVE_MAX_CHARS)
    if not narrative:
        raise InvalidAnswer("no_narrative")
    by_id = {f.id: f for f in findings}
    cited = [by_id[i] for i in answer.finding_ids]
    finding_ids = list(dict.fromkeys([*answer.finding_ids, *incident.finding_ids]))
    updates: dict[str, object] = {"confidence": round(answer.confidence, 2), "finding_ids": finding_ids}
    if answer.root_cause != incident.root_cause:
        names = sorted({f.event_name for f in cited if f.event_name}) or incident.event_names
        info = cause_info(answer.root_cause)
        lead = max(cited, key=lambda f: SEVERITY_RANK[f.severity])
        events_text = f" ({', '.join(names)})" if names else ""
        updates |= {
            "root_cause": answer.root_cause,
            "event_names": names,
            "severity": max([incident.severity, *(f.severity for f in cited)], key=SEVERITY_RANK.__getitem__),
            "summary": f"{info.title}{events_text}: {lead.summary}",
            "fixes": rederive_fixes(answer.root_cause, toolbox, names),
        }
    updated = incident.model_copy(update=updates)
    return DiagnosisOutcome(incident=Incident.model_validate(updated.model_dump()), narrative=narrative,
                            source="llm", cited_finding_ids=answer.finding_ids)


def rederive_fixes(cause: str, toolbox: Toolbox, event_names: Sequence[str]) -> list[FixSuggestion]:
    """Fixes for ``cause`` from the catalogue's own rules (with the audit's data when there is some)."""
    if toolbox.inputs is not None:
        return suggest_fixes(cause, toolbox.inputs, event_names)
    info = cause_info(cause)
    return [FixSuggestion(kind="manual", summary=info.manual_remedy, requires_approval=False)] \
        if info.fix_kinds else []
