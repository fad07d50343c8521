"""Snapshots of Meta reads, audits with their findings, and incidents across hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from tools.checks.types import (
    AuditInputs,
    DedupeKeyFeedback,
    EventQuality,
    MetaHourlyCount,
    QualitySnapshot,
    make_finding,
)
from tools.diagnosis.types import Incident, TriagedIncident, incident_fingerprint
from tools.ledger.incidents import load_findings
from tools.ledger.inputs import (
    load_meta_counts,
    load_quality_history,
    open_incidents,
    save_audit,
    save_meta_counts,
    save_quality_snapshot,
    upsert_incidents,
)
from tools.ledger.models import Audit, IncidentRow

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PIXEL = "42"


def _quality(at: datetime, score: float) -> QualitySnapshot:
    return QualitySnapshot(fetched_at=at, events=(EventQuality(
        event_name="Purchase", composite_score=score, match_key_coverage={"email": 80.0},
        event_coverage_pct=70.0, upload_frequency="real_time",
        dedupe_key_feedback=(DedupeKeyFeedback("event_id", 90.0, 95.0, 88.0),)),))


def test_quality_snapshots_round_trip_in_order(ledger_engine: Engine) -> None:
    snapshots = [_quality(AT - timedelta(days=d), 8.0 - d / 10) for d in (7, 1, 3)]
    with Session(ledger_engine) as session:
        for snapshot in snapshots:
            save_quality_snapshot(session, pixel_id=PIXEL, snapshot=snapshot)
        session.commit()
        history = load_quality_history(session, pixel_id=PIXEL, since=AT - timedelta(days=5), until=AT)
    assert history == (snapshots[2], snapshots[1])


def test_meta_counts_latest_fetch_wins(ledger_engine: Engine) -> None:
    hour = AT - timedelta(hours=1)
    with Session(ledger_engine) as session:
        for fetched, count in ((AT, 5), (AT + timedelta(minutes=30), 7)):
            save_meta_counts(session, pixel_id=PIXEL, fetched_at=fetched, window_start=hour, window_end=AT,
                             counts=[MetaHourlyCount(hour, "Purchase", "server", count),
                                     MetaHourlyCount(hour, "Purchase", "browser", 9)])
        session.commit()
        counts = load_meta_counts(session, pixel_id=PIXEL, start=hour, end=AT)
    assert {(c.source, c.count) for c in counts} == {("server", 7), ("browser", 9)}


def _incident(severity: str) -> Incident:
    return Incident(id="inc-1", pixel_id=PIXEL, root_cause="access_token_invalid", confidence=0.9,
                    severity=severity, summary="token expired", event_names=["Purchase"],
                    fingerprint=incident_fingerprint(PIXEL, "access_token_invalid", ["Purchase"]))


def test_audit_findings_and_incident_lifecycle(ledger_engine: Engine) -> None:
    inputs = AuditInputs(pixel_id=PIXEL, window_start=AT - timedelta(hours=1), window_end=AT,
                         history_start=AT - timedelta(weeks=4), event_hours=(), delivery_hours=())
    finding = make_finding(inputs, check="delivery", code="delivery.token_invalid", severity="critical",
                           summary="190", metrics={"failed": 3})
    with Session(ledger_engine) as session:
        audit_id = save_audit(session, pixel_id=PIXEL, window_start=inputs.window_start, window_end=AT,
                              at=AT, findings=[finding], tokens_used=12)
        # The same audit again: its findings are updated in place, not duplicated.
        again_id = save_audit(session, pixel_id=PIXEL, window_start=inputs.window_start, window_end=AT,
                              at=AT, findings=[finding])
        assert session.get(Audit, audit_id).status == "findings"
        upsert_incidents(session, pixel_id=PIXEL, at=AT,
                         triaged=[TriagedIncident(status="new", incident=_incident("warning"))])
        upsert_incidents(session, pixel_id=PIXEL, at=AT + timedelta(hours=1), triaged=[
            TriagedIncident(status="escalated", incident=_incident("critical"), previous_severity="warning")])
        session.commit()
        assert [i.severity for i in open_incidents(session, PIXEL)] == ["critical"]
        assert session.scalar(select(func.count()).select_from(IncidentRow)) == 1
        upsert_incidents(session, pixel_id=PIXEL, at=AT + timedelta(hours=2),
                         triaged=[TriagedIncident(status="resolved", incident=_incident("critical"))])
        session.commit()
        assert open_incidents(session, PIXEL) == []
        row = session.scalars(select(IncidentRow)).one()
        assert row.status == "resolved" and row.resolved_at is not None
        upsert_incidents(session, pixel_id=PIXEL, at=AT + timedelta(hours=5),
                         triaged=[TriagedIncident(status="new", incident=_incident("warning"))])
        session.commit()
        assert [i.id for i in open_incidents(session, PIXEL)] == ["inc-1"]
    with Session(ledger_engine) as session:
        assert load_findings(session, audit_id=again_id) == [finding]
        assert load_findings(session, audit_id=audit_id) == []
