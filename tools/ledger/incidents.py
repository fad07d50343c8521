"""Audits, their findings, and incidents as they open, escalate and resolve.

Typed over the pydantic ``Finding`` / ``Incident`` models; JSON bodies hold the full model so that
what is read back equals what was written. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import Finding
from tools.diagnosis.types import Incident, TriagedIncident
from tools.ledger.db import rowcount
from tools.ledger.models import Audit, FindingRow, IncidentRow, table_of
from tools.ledger.rollups import dialect_insert
from tools.timeutil import as_utc

AuditStatus = Literal["ok", "findings", "error"]


def save_audit(session: Session, *, pixel_id: str, window_start: datetime, window_end: datetime,
               at: datetime, findings: Sequence[Finding], status: AuditStatus | None = None,
               tokens_used: int = 0, result: dict[str, Any] | None = None) -> int:
    """Store one audit run and its findings; returns the audit id.

    Findings keep their deterministic ids: saving the same audit again updates them in place.
    ``status`` defaults to "findings" when any finding is warning or critical, else "ok".
    """
    serious = [f for f in findings if f.severity in ("warning", "critical")]
    row = {"pixel_id": pixel_id, "window_start": as_utc(window_start), "window_end": as_utc(window_end),
           "at": as_utc(at), "status": status or ("findings" if serious else "ok"),
           "findings": len(findings), "critical": sum(f.severity == "critical" for f in findings),
           "warning": sum(f.severity == "warning" for f in findings), "tokens_used": tokens_used,
           "result": result or {}}
    table = table_of(Audit)
    audit_id = int(session.execute(insert(table).returning(table.c.id), [row]).scalar_one())
    if findings:
        finding_rows = [{"id": f.id, "audit_id": audit_id, "pixel_id": f.pixel_id, "check": f.check,
                         "code": f.code, "event_name": f.event_name, "severity": f.severity,
                         "fingerprint": f.fingerprint, "window_start": as_utc(f.window_start),
                         "window_end": as_utc(f.window_end), "body": f.model_dump(mode="json")}
                        for f in findings]
        stmt = dialect_insert(session, table_of(FindingRow))
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={
            name: stmt.excluded[name] for name in ("audit_id", "severity", "body")})
        session.execute(stmt, finding_rows)
    return audit_id


def load_findings(session: Session, *, audit_id: int) -> list[Finding]:
    rows = session.scalars(select(col(FindingRow.body)).where(col(FindingRow.audit_id) == audit_id)
                           .order_by(col(FindingRow.id)))
    return [Finding.model_validate(body) for body in rows]


def open_incidents(session: Session, pixel_id: str) -> list[Incident]:
    """The pixel's incidents still open, oldest first."""
    rows = session.scalars(select(col(IncidentRow.body)).where(
        col(IncidentRow.pixel_id) == pixel_id, col(IncidentRow.status) == "open").order_by(col(IncidentRow.opened_at)))
    return [Incident.model_validate(body) for body in rows]


def upsert_incidents(session: Session, *, pixel_id: str, triaged: Sequence[TriagedIncident],
                     at: datetime) -> None:
    """Apply a triage: ``new`` opens an incident, ``ongoing``/``escalated`` refresh the open one
    (severity, body, last seen), ``resolved`` closes it at ``at``."""
    at = as_utc(at)
    table = table_of(IncidentRow)
    for item in triaged:
        incident = item.incident
        body = incident.model_dump(mode="json")
        is_open = (table.c.pixel_id == pixel_id) & (table.c.fingerprint == incident.fingerprint) & (
            table.c.status == "open")
        if item.status in ("resolved", "superseded"):
            session.execute(update(table).where(is_open).values(status="resolved", resolved_at=at,
                                                                last_seen_at=at))
            continue
        changed = session.execute(update(table).where(is_open).values(
            severity=incident.severity, root_cause=incident.root_cause, body=body, last_seen_at=at))
        if rowcount(changed):
            continue
        # An incident id seen before (resolved since) is reopened rather than duplicated.
        stmt = dialect_insert(session, table)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={
            name: stmt.excluded[name] for name in ("fingerprint", "root_cause", "severity", "status",
                                                    "opened_at", "last_seen_at", "resolved_at", "body")})
        session.execute(stmt, [{
            "id": incident.id, "pixel_id": pixel_id, "fingerprint": incident.fingerprint,
            "root_cause": incident.root_cause, "severity": incident.severity, "status": "open",
            "opened_at": at, "last_seen_at": at, "resolved_at": None, "body": body}])
