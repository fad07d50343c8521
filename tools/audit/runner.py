"""One pixel's hourly audit, step by step. The agent's audit graph runs the same steps as nodes;
``audit_pixel`` chains them without an LLM (tests, benchmarks, evals, the offline path)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from tools.audit.meta_side import MetaSide, quality_history_start, read_meta_side
from tools.checks.crawler import set_apart_crawler
from tools.checks.registry import run_checks
from tools.checks.types import SEVERITY_RANK, AuditInputs, Finding, IncidentSpan, NotJudged
from tools.checks.witness import witness_report
from tools.diagnosis.recovery import recovery_judge
from tools.diagnosis.rules import PIXEL_WIDE, diagnose
from tools.diagnosis.triage import triage
from tools.diagnosis.types import Incident, TriagedIncident
from tools.ledger.incidents import open_incidents, save_audit, upsert_incidents
from tools.ledger.inputs import load_ledger_inputs, load_payload_inputs, load_relay_refusals
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts, load_quality_history
from tools.meta.client import GraphClient
from tools.senders.track import recent_changes
from tools.timeutil import HOUR, audit_window

PixelStatus = Literal["healthy", "degraded", "critical"]
ClientFactory = Callable[[PixelConfig], GraphClient | None]


@dataclass
class PixelAudit:
    """Everything one pixel's audit produced; ``inputs`` stays in memory for drill-downs."""

    pixel_id: str
    window_start: datetime
    window_end: datetime
    at: datetime
    inputs: AuditInputs
    findings: list[Finding]
    incidents: list[Incident] = field(default_factory=list)
    triaged: list[TriagedIncident] = field(default_factory=list)
    not_judged: list[NotJudged] = field(default_factory=list)
    audit_id: int | None = None
    tokens_used: int = 0

    @property
    def status(self) -> PixelStatus:
        return pixel_status(self.findings)


def pixel_status(findings: Sequence[Finding]) -> PixelStatus:
    worst = max((SEVERITY_RANK[f.severity] for f in findings), default=0)
    return "critical" if worst >= 2 else "degraded" if worst == 1 else "healthy"


def gather_inputs(session: Session, *, pixel: PixelConfig, at: datetime,
                  client: GraphClient | None) -> AuditInputs:
    """Load the ledger rollups and read Meta's side for the hour an audit at ``at`` looks at."""
    window_start, window_end = audit_window(at)
    thresholds = pixel.thresholds
    history_start = window_end - timedelta(weeks=thresholds.baseline_weeks)
    ledger = load_ledger_inputs(session, pixel_id=pixel.id, history_start=history_start,
                                window_end=window_end)
    meta: MetaSide = read_meta_side(session, client, pixel_id=pixel.id, history_start=history_start,
                                    window_end=window_end, at=at)
    history = load_quality_history(session, pixel_id=pixel.id, since=quality_history_start(window_end),
                                   until=window_end)
    if meta.quality is not None:
        # The snapshot just read is the current one, not part of the history it is compared with.
        history = tuple(s for s in history if s.fetched_at != meta.quality.fetched_at)
    return set_apart_crawler(AuditInputs(
        pixel_id=pixel.id, window_start=window_start, window_end=window_end, history_start=history_start,
        event_hours=ledger.event_hours, delivery_hours=ledger.delivery_hours, order_hours=ledger.order_hours,
        meta_counts=meta.counts, quality=meta.quality, quality_history=history,
        meta_read_errors=meta.errors, thresholds=thresholds, timezone=pixel.timezone,
        has_orders=ledger.has_orders, audited_at=at,
        incident_spans=incident_spans(open_incidents(session, pixel.id), window_start),
        sender_changes=recent_changes(session, pixel_id=pixel.id, until=window_end),
        arrival_hours=ledger.arrival_hours,
        payload_hours=load_payload_inputs(session, pixel_id=pixel.id, window_end=window_end),
        relay_refusals=load_relay_refusals(session, pixel_id=pixel.id, start=window_start, end=window_end),
    ))


def incident_spans(incidents: Sequence[Incident], window_start: datetime) -> tuple[IncidentSpan, ...]:
    """The open incidents as the checks see them: which series they touch and since when (each check
    keeps the hours of the incidents that bear on what it measures out of its references)."""
    spans = []
    for incident in incidents:
        since = incident.started_at or window_start
        names = () if incident.root_cause in PIXEL_WIDE else tuple(incident.event_names)
        spans.append(IncidentSpan(root_cause=incident.root_cause, since=since, event_names=names))
    return tuple(spans)


def cached_inputs(session: Session, *, pixel: PixelConfig, at: datetime) -> AuditInputs:
    """Like ``gather_inputs`` but without asking Meta: its side comes from the stored snapshots.
    For questions and drill-downs between audits (chat), where a Graph API call per question is waste."""
    window_start, window_end = audit_window(at)
    history_start = window_end - timedelta(weeks=pixel.thresholds.baseline_weeks)
    ledger = load_ledger_inputs(session, pixel_id=pixel.id, history_start=history_start, window_end=window_end)
    counts = load_meta_counts(session, pixel_id=pixel.id, start=history_start, end=window_end)
    history = load_quality_history(session, pixel_id=pixel.id, since=quality_history_start(window_end),
                                   until=window_end + HOUR)
    return set_apart_crawler(AuditInputs(
        pixel_id=pixel.id, window_start=window_start, window_end=window_end, history_start=history_start,
        event_hours=ledger.event_hours, delivery_hours=ledger.delivery_hours, order_hours=ledger.order_hours,
        meta_counts=counts or None, quality=history[-1] if history else None, quality_history=history[:-1],
        thresholds=pixel.thresholds, timezone=pixel.timezone, has_orders=ledger.has_orders, audited_at=at,
        incident_spans=incident_spans(open_incidents(session, pixel.id), window_start),
        sender_changes=recent_changes(session, pixel_id=pixel.id, until=at),
        arrival_hours=ledger.arrival_hours,
        payload_hours=load_payload_inputs(session, pixel_id=pixel.id, window_end=window_end)))


def not_judged(inputs: AuditInputs) -> list[NotJudged]:
    """The series this audit could not judge, with the reason (reported, never skipped silently)."""
    return list(witness_report(inputs).not_judged)


def check_and_diagnose(inputs: AuditInputs) -> tuple[list[Finding], list[Incident]]:
    findings = run_checks(inputs)
    return findings, diagnose(findings, inputs)


def store_audit(session: Session, audit: PixelAudit, *, result: dict[str, Any] | None = None) -> int:
    """Persist the audit, its findings and the incident changes (the caller commits)."""
    audit.audit_id = save_audit(
        session, pixel_id=audit.pixel_id, window_start=audit.window_start, window_end=audit.window_end,
        at=audit.at, findings=audit.findings, tokens_used=audit.tokens_used, result=result)
    upsert_incidents(session, pixel_id=audit.pixel_id, triaged=audit.triaged, at=audit.at)
    return audit.audit_id


def audit_pixel(session: Session, *, pixel: PixelConfig, at: datetime, client: GraphClient | None,
                store: bool = True) -> PixelAudit:
    """The whole deterministic audit of one pixel for the hour before ``at``."""
    inputs = gather_inputs(session, pixel=pixel, at=at, client=client)
    findings, incidents = check_and_diagnose(inputs)
    audit = PixelAudit(pixel_id=pixel.id, window_start=inputs.window_start, window_end=inputs.window_end,
                       at=at, inputs=inputs, findings=findings, incidents=incidents,
                       triaged=triage(incidents, open_incidents(session, pixel.id), recovery_judge(inputs)),
                       not_judged=not_judged(inputs))
    if store:
        store_audit(session, audit)
    return audit
