"""Template narratives: 2-4 plain sentences per incident for a marketer, with no LLM.

What broke (the catalogue's title and the affected events), since when, the evidence numbers (the
summaries of the findings that establish the cause, which carry the counts), and what to do.
Deterministic: the same incident and findings give the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tools.checks.types import SEVERITY_RANK, Finding
from tools.diagnosis.catalogue import cause_info
from tools.diagnosis.types import Incident
from tools.senders.types import change_from_json
from tools.timeutil import HOUR

# What the problem costs, in the marketer's terms.
IMPACT: dict[str, str] = {
    "browser_pixel_down": "Meta only sees what the server sends, so reporting and optimisation lose "
                          "the browser's signal.",
    "server_events_down": "Meta is missing these conversions, so campaigns optimise on less data.",
    "access_token_invalid": "Meta accepts none of our server events until the token is replaced.",
    "missed_batch": "The events are safe in the ledger but Meta has not received them.",
    "late_delivery": "Late events count less for optimisation, and those older than 7 days are refused.",
    "dedup_broken": "Meta cannot pair browser and server events, so conversions may be counted twice.",
    "hashing_error": "Meta cannot match these events to people, and customer data may leave unhashed.",
    "match_keys_lost": "Fewer events are matched to people, which lowers match quality and ad results.",
    "malformed_parameter": "Meta rejects whole batches, so every event in them is lost until resent.",
    "duplicate_events": "Conversions are over-counted, which misleads reporting and bidding.",
    "event_renamed": "Campaigns and custom conversions that use the old name stop getting signal.",
    "clock_skew": "Events land in the wrong time or are refused, which skews attribution.",
    "rate_limited": "Events arrive late or not at all while Meta limits our requests.",
    "undetermined": "Meta has none of this hour's server events yet; whether they are lost or only late "
                    "shows next hour.",
    "none": "",
}


def _events_text(incident: Incident) -> str:
    names = incident.event_names
    if not names:
        return "all events of the pixel"
    if len(names) > 4:
        return f"{', '.join(names[:4])} and {len(names) - 4} more events"
    return ", ".join(names)


def onset(incident: Incident, findings: Sequence[Finding]) -> datetime | None:
    """Earliest hour the incident's findings point back to (their window minus the hours metric)."""
    starts = []
    for finding in findings:
        hours = finding.metrics.get("hours")
        span = int(hours) if isinstance(hours, int | float) and hours >= 1 else 1
        starts.append(finding.window_end - span * HOUR)
    return min(starts) if starts else None


def _evidence(incident: Incident, findings: Sequence[Finding]) -> list[str]:
    tells = set(cause_info(incident.root_cause).tell_tales)
    ordered = sorted(findings, key=lambda f: (f.code not in tells, -SEVERITY_RANK[f.severity], f.code,
                                              f.event_name or ""))
    out: list[str] = []
    for finding in ordered[:2]:
        text = finding.summary.strip().rstrip(".")
        if text and text not in out:
            out.append(text)
    return out


def _gap(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if hours and rest else f"{hours} h" if hours else f"{rest} minutes"


def change_sentence(started: datetime, body: dict[str, Any]) -> str:
    """``It began within the hour after the sender changed from woo-capi 3.2.1 to 3.3.0 (14:02 UTC).``

    Onsets are whole hours: a change inside the onset hour is "within the hour after" it, an earlier
    one is that long before the onset. Proximity, not proof: the sentence says "after"."""
    change = change_from_json(body)
    if change.at >= started:
        when = "within the hour after"
    else:
        when = f"{_gap(int((started - change.at).total_seconds() // 60))} after"
    return f"It began {when} {change.describe()} ({change.at:%Y-%m-%d %H:%M} UTC): check that change first."


def narrate(incident: Incident, findings: Sequence[Finding]) -> str:
    """The offline narrative of ``incident``; ``findings`` may hold more than the incident's."""
    info = cause_info(incident.root_cause)
    if incident.root_cause == "none":
        return "Nothing beyond normal variation in this audit. Nothing to do."
    mine = [f for f in findings if f.id in set(incident.finding_ids)]
    started = incident.started_at or onset(incident, mine)
    since = f" since {started:%Y-%m-%d %H:%M} UTC" if started else ""
    sentences = [f"{info.title} for {_events_text(incident)}{since}."]
    sentences.extend(change_sentence(started, change) for change in incident.changes[:2] if started)
    evidence = _evidence(incident, mine)
    if evidence:
        sentences.append("Evidence: " + "; ".join(evidence) + ".")
    if IMPACT.get(incident.root_cause):
        sentences.append(IMPACT[incident.root_cause])
    if incident.candidates:
        titles = " or ".join(cause_info(c).title.lower() for c in incident.candidates)
        sentences.append(f"It is either {titles}. {incident.next_hour or ''}".strip())
    automatic = [fix for fix in incident.fixes if fix.kind != "manual"]
    todo = f"What to do: {info.manual_remedy}"
    if automatic:
        kinds = " and ".join(sorted({fix.kind.replace("_", " ") for fix in automatic}))
        todo += f" A {kinds} fix is ready for approval."
    sentences.append(todo)
    return " ".join(sentences)
