"""From audits to outbox messages: which incidents are announced, what the message says, its chart.

An audit enqueues one outbox message per new, escalated or resolved incident (ongoing incidents stay
silent) for the pixel's Slack channel and for each of its ``email_to`` addresses, with the chart's
data computed from the ledger's snapshots of Meta's counts; then the hourly summaries of every channel
the audit completed (``agent.summary.queue``). The senders are ``agent.slack.outbox`` and
``agent.email.deliver``. This module stays outside ``agent/slack/`` because the same rows, message
and chart feed the email sender too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from agent.slack.blocks import IncidentMessage, ProposalView
from agent.slack.chart import ChartSeries, render_parity_chart
from agent.summary.queue import enqueue_ready, sweep_hours
from tools.diagnosis.catalogue import cause_info
from tools.fixes.planner import get_proposal
from tools.fixes.preview import records_text
from tools.ledger.outbox import enqueue
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts
from tools.timeutil import HOUR, parse_iso, to_iso

ANNOUNCED = ("new", "escalated", "resolved")
CHART_HOURS = 48
MAX_EVIDENCE = 8


def incident_message(session: Session, *, pixel: PixelConfig, item: dict[str, Any], state: dict[str, Any]) -> dict:
    """The Slack message of one triaged incident, as JSON (the outbox payload)."""
    incident = item["incident"]
    findings = {f["id"]: f for f in state.get("findings", [])}
    evidence = [line for fid in incident["finding_ids"] for line in findings.get(fid, {}).get("evidence", [])]
    proposals = []
    for brief in state.get("proposals", []):
        if brief["incident_id"] != incident["id"] or item["status"] == "resolved":
            continue
        proposal = get_proposal(session, brief["id"])
        if proposal is None or proposal.status != "proposed":
            continue
        summary = next((f["summary"] for f in incident["fixes"] if f["kind"] == proposal.kind), proposal.kind)
        if records := records_text(proposal.preview):  # a backfill names the orders it would send
            summary = f"{summary} {records}."
        proposals.append(asdict(ProposalView(
            id=proposal.id, kind=proposal.kind, summary=summary, total_events=proposal.preview.total_events,
            requests=proposal.preview.requests,
            skipped=[(s.reason, s.count) for s in proposal.preview.skipped])))
    message = IncidentMessage(
        pixel_id=pixel.id, root_cause=incident["root_cause"], title=cause_info(incident["root_cause"]).title,
        severity=incident["severity"], status=item["status"], summary=incident["summary"],
        narrative=state.get("narratives", {}).get(incident["id"], ""), evidence=evidence[:MAX_EVIDENCE],
        changes=incident.get("changes", []))
    body = asdict(message)
    body["proposals"] = proposals
    return body


def chart_data(session: Session, *, pixel_id: str, event_names: list[str], window_end: datetime) -> dict:
    """Hourly browser and server counts (Meta's view) for the affected events over two days, and the
    same hours a week earlier as the baseline."""
    start = window_end - CHART_HOURS * HOUR
    week = timedelta(days=7)
    counts = load_meta_counts(session, pixel_id=pixel_id, start=start - week, end=window_end)
    names = set(event_names)
    series: dict[str, dict[str, float]] = {}
    for count in counts:
        if names and count.event_name not in names:
            continue
        if count.hour >= start:
            series.setdefault(count.source, {}).setdefault(to_iso(count.hour), 0)
            series[count.source][to_iso(count.hour)] += count.count
        else:
            key = to_iso(count.hour + week)
            series.setdefault("baseline", {}).setdefault(key, 0)
            series["baseline"][key] += count.count
    return {"title": f"{', '.join(sorted(names)) or 'all events'}: browser vs server vs last week",
            "window_end": to_iso(window_end), "series": series}


def render_chart(data: dict) -> bytes | None:
    if not data or not data.get("series"):
        return None
    series = [ChartSeries(event_name="all", source=source,
                          points=sorted((parse_iso(h), float(c)) for h, c in points.items()))
              for source, points in sorted(data["series"].items())]
    end = parse_iso(data["window_end"])
    return render_parity_chart(series, data["title"], mark=(end - HOUR, end))


def enqueue_audit_notifications(session: Session, *, pixel: PixelConfig, state: dict[str, Any]) -> int:
    """Queue one message per new / escalated / resolved incident of an audit, for the pixel's Slack
    channel and each ``email_to`` address; returns how many."""
    # (kind, channel, key prefix); the Slack key keeps its original form for rows queued before email.
    targets = ([("incident", pixel.slack_channel, "incident")] if pixel.slack_channel else []) + [
        ("email_incident", f"email:{address.lower()}", f"email-incident:{address.lower()}")
        for address in pixel.email_to]
    if not targets:
        return 0
    window_end = parse_iso(state["report"]["window"]["end"])
    queued = 0
    for item in state.get("triaged", []):
        if item["status"] not in ANNOUNCED:
            continue
        incident = item["incident"]
        payload = {"message": incident_message(session, pixel=pixel, item=item, state=state),
                   "chart": chart_data(session, pixel_id=pixel.id, event_names=incident["event_names"],
                                       window_end=window_end)}
        for kind, channel, prefix in targets:
            key = f"{prefix}:{incident['fingerprint']}:{item['status']}:{to_iso(window_end)}"
            queued += enqueue(session, dedupe_key=key, channel=channel, kind=kind, payload=payload,
                              at=window_end, pixel_id=pixel.id, incident_id=incident["id"])
    return queued


def enqueue_summaries(session: Session, *, pixels: Sequence[PixelConfig], hours: Iterable[datetime]) -> int:
    """Queue the summaries of ``hours`` for every channel and address whose pixels are all audited
    (or failed) for that hour; a summary already queued is not queued again. No commit."""
    return enqueue_ready(session, pixels=pixels, hours=hours)


def after_round(session: Session, *, pixels: Sequence[PixelConfig], audited: Iterable[datetime],
                now: datetime) -> int:
    """After a scheduler round: summaries of the hours it audited and of the last two hours. Catches
    the hours settled by a failed audit, or by two replicas finishing at the same moment; and the
    weekly reports that are due (``agent.summary.weekly_queue``)."""
    from agent.summary.weekly_queue import enqueue_weekly_due

    queued = enqueue_ready(session, pixels=pixels, hours=[*audited, *sweep_hours(now, hours=2)])
    return queued + enqueue_weekly_due(session, pixels=pixels, now=now)
