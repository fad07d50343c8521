"""What the chat knows about a pixel when a question comes in, and its JSON digest for the prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agent.reasoning.offline import narrate
from agent.reasoning.render import finding_brief, findings_for_prompt, incident_brief
from tools.checks.types import AuditInputs, Finding
from tools.diagnosis.types import Incident
from tools.senders.types import SenderChange
from tools.timeutil import to_iso

MAX_CONTEXT_PROPOSALS = 10
MAX_CONTEXT_CHANGES = 20
# Proposal fields worth showing; anything else a store keeps (approver ids, payloads) stays out.
PROPOSAL_FIELDS = ("id", "kind", "status", "since", "until", "event_names", "reason", "summary",
                   "incident_id", "created_at", "preview")


@dataclass
class ChatContext:
    """The latest audit of one pixel as the chat sees it.

    ``inputs`` is None when the pixel was never audited; ``proposals`` are the open fix proposals
    (dicts as the proposal store gives them); ``narratives`` maps incident id -> the narrative the
    audit already wrote (the offline one is used for incidents missing from it)."""

    pixel_id: str | None
    inputs: AuditInputs | None = None
    findings: list[Finding] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    narratives: dict[str, str] = field(default_factory=dict)

    def narrative_of(self, incident: Incident) -> str:
        return self.narratives.get(incident.id) or narrate(incident, self.findings)


def proposal_brief(proposal: dict[str, Any]) -> dict[str, Any]:
    return {key: proposal[key] for key in PROPOSAL_FIELDS if key in proposal}


def context_digest(context: ChatContext) -> dict[str, Any]:
    """A JSON-serialisable summary of ``context`` (bounded; findings most severe first)."""
    window = None
    if context.inputs is not None:
        window = [to_iso(context.inputs.window_start), to_iso(context.inputs.window_end)]
    return {
        "pixel_id": context.pixel_id,
        "audited_window": window,
        "status": status_word(context),
        "incidents": [{**incident_brief(i), "narrative": context.narrative_of(i)} for i in context.incidents],
        "findings": [finding_brief(f) for f in findings_for_prompt(context.findings)],
        "open_proposals": [proposal_brief(p) for p in context.proposals[:MAX_CONTEXT_PROPOSALS]],
        # Who sends and what changed in it lately (plugin/SDK versions, fields, match keys).
        "sender_changes": [c.as_json() for c in recent_changes(context)],
    }


def recent_changes(context: ChatContext, hours: int = 7 * 24) -> list[SenderChange]:
    """The pixel's sender changes of the last ``hours`` before the audited window's end (and since)."""
    if context.inputs is None:
        return []
    start = context.inputs.window_end - timedelta(hours=hours)
    return [c for c in context.inputs.sender_changes if c.at >= start][-MAX_CONTEXT_CHANGES:]


def status_word(context: ChatContext) -> str:
    """``no_audit``, ``healthy``, ``degraded`` (warnings) or ``broken`` (a critical incident)."""
    if context.inputs is None and not context.findings and not context.incidents:
        return "no_audit"
    if any(i.severity == "critical" for i in context.incidents):
        return "broken"
    if context.incidents:
        return "degraded"
    return "healthy"
