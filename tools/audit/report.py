"""The audit's JSON output. Field names are a contract other tools read: add, never rename."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tools.audit.runner import PixelAudit
from tools.diagnosis.types import Incident
from tools.timeutil import to_iso


def incident_json(incident: Incident, *, narrative: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": incident.id, "pixel_id": incident.pixel_id, "root_cause": incident.root_cause,
        "confidence": round(incident.confidence, 3), "severity": incident.severity,
        "event_names": list(incident.event_names), "finding_ids": list(incident.finding_ids),
        "summary": incident.summary, "fingerprint": incident.fingerprint,
        "started_at": to_iso(incident.started_at) if incident.started_at else None,
        "candidates": list(incident.candidates), "next_hour": incident.next_hour,
        "fixes": [fix.model_dump(mode="json") for fix in incident.fixes],
        # Sender changes shortly before the onset (tools.diagnosis.changes): {"at", "kind", "before", "after", ...}
        "changes": [dict(change) for change in incident.changes],
    }
    if narrative is not None:
        body["narrative"] = narrative
    return body


def audit_report(audits: Sequence[PixelAudit], *, window: tuple[datetime, datetime],
                 narratives: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"window", "pixels", "findings", "incidents"}`` for one audit round (see the README)."""
    narratives = narratives or {}
    triage_status = {t.incident.id: t.status for a in audits for t in a.triaged}
    report: dict[str, Any] = {
        "window": {"start": to_iso(window[0]), "end": to_iso(window[1])},
        "pixels": [{"pixel_id": a.pixel_id, "status": a.status,
                    "findings": len(a.findings), "incidents": len(a.incidents),
                    "not_judged": [{"event_name": n.event_name, "source": n.source, "reason": n.reason}
                                   for n in a.not_judged]} for a in audits],
        "findings": [f.model_dump(mode="json", exclude={"window_start", "window_end"}) for a in audits
                     for f in a.findings],
        "incidents": [{**incident_json(i, narrative=narratives.get(i.id)),
                       "triage": triage_status.get(i.id, "new")} for a in audits for i in a.incidents],
        "resolved": [incident_json(t.incident) for a in audits for t in a.triaged if t.status == "resolved"],
        # Open incidents this audit did not see again but that have not shown recovery either.
        "still_open": [incident_json(t.incident) for a in audits for t in a.triaged
                       if t.status == "ongoing" and t.incident.id not in {i.id for i in a.incidents}],
    }
    if extra:
        report.update(extra)
    return report
