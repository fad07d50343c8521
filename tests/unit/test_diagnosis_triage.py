"""Triage: new, ongoing, escalated and resolved incidents."""

from __future__ import annotations

from tools.diagnosis.triage import triage
from tools.diagnosis.types import Incident, incident_fingerprint


def _incident(cause: str, severity: str, events: list[str] | None = None, hour: int = 15) -> Incident:
    fingerprint = incident_fingerprint("px", cause, events or [])
    return Incident(id=f"i_{cause}_{hour}", pixel_id="px", root_cause=cause, confidence=0.8,  # type: ignore[arg-type]
                    severity=severity, event_names=events or [], summary=cause,  # type: ignore[arg-type]
                    fingerprint=fingerprint)


def test_new_ongoing_escalated_resolved() -> None:
    open_before = [
        _incident("access_token_invalid", "critical", hour=14),
        _incident("late_delivery", "warning", hour=14),
        _incident("hashing_error", "critical", hour=14),
    ]
    now = [
        _incident("access_token_invalid", "critical"),  # same severity: ongoing
        _incident("late_delivery", "critical"),  # rose: escalated
        _incident("clock_skew", "warning"),  # not open: new
    ]
    result = {t.incident.root_cause: t for t in triage(now, open_before)}
    assert result["access_token_invalid"].status == "ongoing"
    assert result["late_delivery"].status == "escalated"
    assert result["late_delivery"].previous_severity == "warning"
    assert result["clock_skew"].status == "new" and result["clock_skew"].previous_severity is None
    assert result["hashing_error"].status == "resolved"
    assert result["hashing_error"].incident.id == "i_hashing_error_14"


def test_lower_severity_is_ongoing_not_announced() -> None:
    (item,) = triage([_incident("dedup_broken", "warning", ["Purchase"])],
                     [_incident("dedup_broken", "critical", ["Purchase"], hour=14)])
    assert item.status == "ongoing" and item.previous_severity == "critical"


def test_other_events_make_another_incident() -> None:
    result = triage([_incident("dedup_broken", "warning", ["Lead"])],
                    [_incident("dedup_broken", "warning", ["Purchase"], hour=14)])
    assert sorted(t.status for t in result) == ["new", "resolved"]


def test_nothing_open_nothing_now() -> None:
    assert triage([], []) == []
