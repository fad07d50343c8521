"""Naming the change that broke it: an incident that starts within a few hours after a change of the
pixel's sender (``tools.senders``) carries that change (``Incident.changes``), so the audit JSON, the
Slack message and the narrative can say "3 minutes after the sender changed from 3.2.1 to 3.3.0".

A change is named when it is dated from ``BEFORE`` before the incident's onset to the end of the onset's
hour (onsets are hours: a change at 14:02 and a loss from the 14:00 hour belong together), and when it
bears on the incident: a change of one event's fields or match keys only for an incident on that event.
Proximity is not proof; the narrative says "after", never "because of".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from tools.diagnosis.types import Incident
from tools.senders.types import SenderChange
from tools.timeutil import HOUR

BEFORE = timedelta(hours=6)


def changes_for(incident: Incident, changes: Sequence[SenderChange]) -> list[SenderChange]:
    """The changes that bear on ``incident`` and were dated shortly before (or in the hour of) its onset."""
    start = incident.started_at
    if start is None:
        return []
    return [change for change in changes
            if start - BEFORE <= change.at < start + HOUR
            and (not change.event_name or not incident.event_names or change.event_name in incident.event_names)]


def attach_changes(incidents: Sequence[Incident], changes: Sequence[SenderChange]) -> list[Incident]:
    """The incidents, each with the changes that preceded its onset (unchanged when there are none)."""
    if not changes:
        return list(incidents)
    out = []
    for incident in incidents:
        near = changes_for(incident, changes)
        out.append(incident.model_copy(update={"changes": [c.as_json() for c in near]}) if near else incident)
    return out
