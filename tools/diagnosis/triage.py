"""Triage: compare this audit's incidents with the ones still open, so people hear about a problem
once when it starts, again only if it gets worse, and once more when it is over."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tools.checks.types import SEVERITY_RANK
from tools.diagnosis.types import Incident, TriagedIncident


def triage(current: Sequence[Incident], open_incidents: Sequence[Incident],
           recovered: Callable[[Incident], bool] | None = None) -> list[TriagedIncident]:
    """Label each incident, matched on fingerprint:

    - ``new``: not open before (announce);
    - ``ongoing``: open before at the same or a higher severity (do not announce again);
    - ``escalated``: open before at a lower severity (announce again);
    - ``resolved``: open before, absent now, and ``recovered(incident)`` shows the evidence of recovery
      (announce once; the open incident is returned). Absent without that evidence (a night hour too
      quiet to tell, a series not judged) keeps it ``ongoing``: an incident never closes because
      the data went quiet or the baseline moved.

    An ongoing incident keeps the onset it was first given.

    Current incidents come first in their given order, then the resolved ones.
    """
    previous = {incident.fingerprint: incident for incident in open_incidents}
    seen: set[str] = set()
    out: list[TriagedIncident] = []
    for incident in current:
        if incident.fingerprint in seen:
            continue  # the same problem twice in one audit is announced once
        seen.add(incident.fingerprint)
        before = previous.get(incident.fingerprint)
        if before is None:
            out.append(TriagedIncident(status="new", incident=incident))
            continue
        rose = SEVERITY_RANK[incident.severity] > SEVERITY_RANK[before.severity]
        if before.started_at is not None and (incident.started_at is None
                                              or before.started_at < incident.started_at):
            incident = incident.model_copy(update={"started_at": before.started_at})
        out.append(TriagedIncident(status="escalated" if rose else "ongoing", incident=incident,
                                   previous_severity=before.severity))
    decided = {t.incident.root_cause for t in out if t.status == "new"}
    for fingerprint, before in previous.items():
        if fingerprint in seen:
            continue
        if before.root_cause == "undetermined" and decided & set(before.candidates):
            out.append(TriagedIncident(status="superseded", incident=before, previous_severity=before.severity))
        elif recovered is None or recovered(before):
            out.append(TriagedIncident(status="resolved", incident=before, previous_severity=before.severity))
        else:
            out.append(TriagedIncident(status="ongoing", incident=before, previous_severity=before.severity))
    return out
