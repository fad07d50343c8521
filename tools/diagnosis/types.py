"""Incidents: a pixel's findings grouped under one root cause from the catalogue."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from tools.checks.types import Severity
from tools.fixes.registry import RUNNABLE_KINDS

RootCause = Literal[
    "browser_pixel_down",
    "server_events_down",
    "access_token_invalid",
    "missed_batch",
    "late_delivery",
    "dedup_broken",
    "hashing_error",
    "match_keys_lost",
    "malformed_parameter",
    "duplicate_events",
    "event_renamed",
    "clock_skew",
    "rate_limited",
    # The first hour cannot tell the candidates apart (a skipped batch or a backlog): say so, name
    # them and what the next hour will show, and propose nothing until the data decide.
    "undetermined",
    "none",
]
ROOT_CAUSES: tuple[str, ...] = get_args(RootCause)

# The runnable kinds of the fix registry (tools/fixes/registry.py), and a person's manual step.
FixKind = Literal[(*RUNNABLE_KINDS, "manual")]  # type: ignore[valid-type]
FIX_KINDS: tuple[str, ...] = get_args(FixKind)


class FixSuggestion(BaseModel):
    """A fix that applies to an incident. ``params`` are what the fix planner needs
    (e.g. {"since": ISO, "until": ISO, "event_names": [...]}) for replay kinds."""

    kind: FixKind
    summary: str
    params: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = True


class Incident(BaseModel):
    id: str
    pixel_id: str
    root_cause: RootCause
    confidence: float = Field(ge=0.0, le=1.0)
    severity: Severity
    event_names: list[str] = Field(default_factory=list)
    finding_ids: list[str] = Field(default_factory=list)
    summary: str
    fixes: list[FixSuggestion] = Field(default_factory=list)
    # Stable across hours: pixel + root cause + affected events. Used to recognise an open incident.
    fingerprint: str
    # When the evidence says it began (the change point of its findings; the window start without
    # one). Kept from the first audit that saw it, so references stay frozen at the onset.
    started_at: datetime | None = None
    # The story told when it was diagnosed (LLM or offline), which it keeps while its evidence (the
    # codes and events of its findings) stays the same: an ongoing incident is not re-told hourly.
    narrative: str | None = None
    diagnosed_by: str | None = None
    evidence_key: str | None = None
    # For ``undetermined``: the causes still possible, and what the next hour will show.
    candidates: list[str] = Field(default_factory=list)
    next_hour: str | None = None
    # Sender changes shortly before the onset (tools.diagnosis.changes): {"at", "kind", "before", "after",
    # "sender", "event_name"?}.
    changes: list[dict[str, Any]] = Field(default_factory=list)


def incident_fingerprint(pixel_id: str, root_cause: str, event_names: list[str]) -> str:
    raw = f"{pixel_id}|{root_cause}|{','.join(sorted(event_names))}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# ``superseded``: an undetermined incident whose cause the data have since decided (closed without
# an announcement: the determined incident is announced as new).
TriageStatus = Literal["new", "ongoing", "escalated", "resolved", "superseded"]


class TriagedIncident(BaseModel):
    """An incident compared with the ones still open from earlier audits."""

    status: TriageStatus
    incident: Incident
    previous_severity: Severity | None = None
