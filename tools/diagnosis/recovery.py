"""When is an open incident over? Only on evidence of recovery, never because its findings went
quiet: a night hour with two expected events, a series the audit could not judge, or a baseline that
absorbed the failure would otherwise "resolve" a pipeline that is still broken.

- Volume causes (a channel or an event lost its share): every affected series is judged by its
  witnesses this hour and none of them still shows the drop (``tools.checks.witness``: the drop is
  either shown to be over by its recovery test or no longer supported by the evidence).
- Delivery causes (token, rate limit, rejected batches, skipped sends, backlog): Meta accepted events
  in the audited window, and no delivery finding remains.
- Data-quality causes (hashing, match keys, dedup keys, duplicates, clock): the window carried server
  events for the checks to look at.
"""

from __future__ import annotations

from collections.abc import Callable

from tools.checks.types import AuditInputs, Source
from tools.checks.witness import ALL_EVENTS, witness_report
from tools.diagnosis.types import Incident
from tools.timeutil import hours_between

VOLUME_CAUSES: dict[str, tuple[Source, ...]] = {
    "server_events_down": ("server",),
    "browser_pixel_down": ("browser",),
    "event_renamed": ("server", "browser"),
}
DELIVERY_CAUSES = frozenset({"access_token_invalid", "rate_limited", "malformed_parameter", "missed_batch",
                             "undetermined", "late_delivery"})


def recovery_judge(inputs: AuditInputs) -> Callable[[Incident], bool]:
    """A function telling, for an open incident absent from this audit, whether it has recovered."""
    report = witness_report(inputs)
    window = set(hours_between(inputs.window_start, inputs.window_end))
    accepted = sum(r.events_received for r in inputs.delivery_hours if r.hour in window)
    window_events = sum(r.events for r in inputs.event_hours if r.hour in window)

    def series_back(name: str, source: Source) -> bool | None:
        verdicts = report.for_series(name, source)
        if not verdicts:
            return None  # this channel does not carry the event: no say
        if any(v.alarm for v in verdicts):
            return False
        return any(v.judged for v in verdicts)

    def recovered(incident: Incident) -> bool:
        if incident.pixel_id != inputs.pixel_id:
            return False
        sources = VOLUME_CAUSES.get(incident.root_cause)
        if sources is not None:
            names = incident.event_names or [ALL_EVENTS]
            answers = [series_back(name, source) for name in names for source in sources]
            known = [a for a in answers if a is not None]
            return bool(known) and all(known)
        if incident.root_cause in DELIVERY_CAUSES:
            return accepted > 0
        return window_events > 0

    return recovered
