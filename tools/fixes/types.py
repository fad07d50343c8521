"""Typed, JSON-serialisable shapes of the fixes: they travel in LangGraph state and Slack payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, field_validator, model_validator

from tools.fixes.registry import RUNNABLE_KINDS
from tools.timeutil import parse_iso

# Derived from the registry (tools/fixes/registry.py), so a new kind is valid everywhere at once.
FixKindToRun = Literal[RUNNABLE_KINDS]  # type: ignore[valid-type]
ProposalStatus = Literal["proposed", "approved", "rejected", "executing", "executed", "failed", "expired"]
ReplayStatus = Literal["never_sent", "pending", "failed"]
Decision = Literal["approve", "reject"]
ChunkStatus = Literal["planned", "sending", "sent", "failed", "uncertain", "skipped"]
OPEN_STATUSES = ("proposed", "approved", "executing")
ALL_UNDELIVERED: tuple[ReplayStatus, ...] = get_args(ReplayStatus)
# Meta's subcode when a batch was rejected over one parameter (docs/meta-api.md).
PARAMETER_SUBCODES: dict[str, int] = {"fbc": 2804001}


class FixParams(BaseModel):
    """What a fix acts on. Times are ISO-8601 (event_time window, [since, until)); missing window:
    the last 7 days before the time the fix is planned "at"."""

    since: str | None = None
    until: str | None = None
    event_names: list[str] = Field(default_factory=list)
    statuses: list[ReplayStatus] = Field(default_factory=lambda: list(ALL_UNDELIVERED))
    parameter: str | None = None  # repair_and_replay: the user_data field Meta rejected (fbc)
    subcode: int | None = None  # repair_and_replay: Meta's subcode (default from the parameter)
    fields: list[str] = Field(default_factory=list)  # rehash: the fields the hashing check flagged

    model_config = {"extra": "ignore"}

    @field_validator("since", "until")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            parse_iso(value)  # raises ValueError on a bad timestamp
        return value

    @model_validator(mode="after")
    def _ordered(self) -> FixParams:
        if self.since and self.until and parse_iso(self.since) >= parse_iso(self.until):
            raise ValueError("since must be before until")
        if not self.statuses:
            raise ValueError("at least one delivery status is needed")
        return self


class EventHourCount(BaseModel):
    event_name: str
    hour: datetime
    count: int


class SkipCount(BaseModel):
    reason: str  # too_old | already_delivered | no_payload | other_error | ...
    count: int


class ParameterChange(BaseModel):
    parameter: str
    action: str  # dropped | repaired | rehashed | relay_mode
    count: int


class FixPreview(BaseModel):
    kind: FixKindToRun
    pixel_id: str
    since: datetime
    until: datetime
    event_names: list[str]
    total_events: int
    requests: int
    by_event_hour: list[EventHourCount] = Field(default_factory=list)
    skipped: list[SkipCount] = Field(default_factory=list)
    changes: list[ParameterChange] = Field(default_factory=list)
    # Kinds that send the shop's own records (backfill_from_orders): their ids (at most
    # ``MAX_PREVIEW_REFS``) and the value total by currency.
    refs: list[str] = Field(default_factory=list)
    value_by_currency: dict[str, float] = Field(default_factory=dict)


MAX_PREVIEW_REFS = 50


class ExecutionResult(BaseModel):
    sent: int = 0  # events in requests Meta answered
    received: int = 0  # Meta's events_received
    skipped: int = 0  # events left out at send time (too old by then, already delivered, purged)
    failed: int = 0  # events in requests Meta rejected
    uncertain: int = 0  # events in a request whose answer was never recorded (see execute.py)
    requests: int = 0  # HTTP requests made (retries included)
    errors: dict[str, int] = Field(default_factory=dict)  # "code/subcode" -> rejected requests
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)  # too_old, no_payload, ...
    finished: bool = False  # False: work remains (rate limited, interrupted); run again to resume


class Verification(BaseModel):
    check: str
    before: dict[str, Any]
    after: dict[str, Any]
    resolved: bool
    summary: str


class FixProposal(BaseModel):
    id: str
    pixel_id: str
    incident_id: str | None = None
    incident_fingerprint: str | None = None
    kind: FixKindToRun
    params: dict[str, Any]
    preview: FixPreview
    status: ProposalStatus
    created_at: datetime
    expires_at: datetime
    created_by: str = "agent"
    decided_by: str | None = None
    decided_at: datetime | None = None
    result: ExecutionResult | None = None
    verification: Verification | None = None


class TrailEntry(BaseModel):
    proposal_id: str
    actor: str
    action: str
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class FixError(Exception):
    """Base of the errors a person or a caller can act on."""


class ProposalNotFound(FixError):
    pass


class ProposalExpired(FixError):
    pass


class ProposalAlreadyDecided(FixError):
    pass


class ProposalNotApproved(FixError):
    """execute_fix on a proposal that was never approved (or was rejected / expired)."""
