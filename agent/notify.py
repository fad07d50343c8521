"""From audits to Slack: which incidents are announced, what the message says, and delivery.

An audit enqueues one outbox message per new, escalated or resolved incident (ongoing incidents stay
silent), with the chart's data computed from the ledger's snapshots of Meta's counts. A sender posts
pending messages; Slack failures leave them pending (retried), so nothing is lost. A daily digest
per pixel replaces the silence when nothing changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from agent.slack.blocks import IncidentMessage, PixelStatusLine, ProposalView, SummaryMessage
from agent.slack.chart import ChartSeries, render_parity_chart
from agent.slack.notifier import SlackDeliveryError, SlackNotifier
from tools.diagnosis.catalogue import cause_info
from tools.fixes.planner import get_proposal
from tools.ledger.incidents import open_incidents
from tools.ledger.outbox import enqueue, mark_failed, mark_sent, pending
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts
from tools.timeutil import HOUR, floor_hour, parse_iso, to_iso

log = logging.getLogger(__name__)
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
        proposals.append(asdict(ProposalView(
            id=proposal.id, kind=proposal.kind, summary=summary, total_events=proposal.preview.total_events,
            requests=proposal.preview.requests,
            skipped=[(s.reason, s.count) for s in proposal.preview.skipped])))
    message = IncidentMessage(
        pixel_id=pixel.id, root_cause=incident["root_cause"], title=cause_info(incident["root_cause"]).title,
        severity=incident["severity"], status=item["status"], summary=incident["summary"],
        narrative=state.get("narratives", {}).get(incident["id"], ""), evidence=evidence[:MAX_EVIDENCE])
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
    series = [ChartSeries(event_name="all", source=source,  # type: ignore[arg-type]
                          points=sorted((parse_iso(h), float(c)) for h, c in points.items()))
              for source, points in sorted(data["series"].items())]
    end = parse_iso(data["window_end"])
    return render_parity_chart(series, data["title"], mark=(end - HOUR, end))


def enqueue_audit_notifications(session: Session, *, pixel: PixelConfig, state: dict[str, Any]) -> int:
    """Queue one message per new / escalated / resolved incident of an audit; returns how many."""
    if not pixel.slack_channel:
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
        key = f"incident:{incident['fingerprint']}:{item['status']}:{to_iso(window_end)}"
        queued += enqueue(session, dedupe_key=key, channel=pixel.slack_channel, kind="incident",
                          payload=payload, at=window_end, pixel_id=pixel.id, incident_id=incident["id"])
    return queued


def enqueue_daily_digest(session: Session, *, pixel: PixelConfig, at: datetime, digest_hour: int = 9) -> bool:
    """Once a day (at ``digest_hour`` in the pixel's time zone), a summary of what is open."""
    if not pixel.slack_channel:
        return False
    local = at.astimezone(ZoneInfo(pixel.timezone))
    if local.hour != digest_hour:
        return False
    still_open = open_incidents(session, pixel.id)
    worst = max((i.severity for i in still_open), key=("info", "warning", "critical").index, default="ok")
    headline = (f"{len(still_open)} open incident(s): " + ", ".join(sorted({i.root_cause for i in still_open}))
                if still_open else "healthy: no open incident")
    end = floor_hour(at)
    summary = SummaryMessage(title=f"Daily digest for pixel {pixel.id}", window_start=end - timedelta(days=1),
                             window_end=end, pixels=[PixelStatusLine(pixel.id, worst, headline, len(still_open))])
    body = asdict(summary)
    body["window_start"], body["window_end"] = to_iso(summary.window_start), to_iso(summary.window_end)
    return enqueue(session, dedupe_key=f"digest:{pixel.id}:{local.date().isoformat()}", channel=pixel.slack_channel,
                   kind="digest", payload={"summary": body}, at=at, pixel_id=pixel.id)


@dataclass
class OutboxReport:
    sent: int = 0
    retry_later: int = 0
    failed: int = 0


def _summary(body: dict) -> SummaryMessage:
    lines = [PixelStatusLine(**line) for line in body.get("pixels", [])]
    return SummaryMessage(title=body["title"], window_start=parse_iso(body["window_start"]),
                          window_end=parse_iso(body["window_end"]), pixels=lines, note=body.get("note"))


def delivery_failure(exc: SlackDeliveryError) -> tuple[str, bool]:
    """(error code, retryable) of a failed post. An HTTP 429 or 5xx is transient whatever its body:
    Slack's SDK reports a non-JSON error page (a 500 from a proxy) as an ``error`` holding that page."""
    status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return f"http_{status}", True
    return exc.error, exc.retryable


def deliver_outbox(session_factory: Callable[[], Session], notifier: SlackNotifier, *, now: datetime,
                   limit: int = 50) -> OutboxReport:
    """Post pending messages; a failure is counted and retried on the next call."""
    report = OutboxReport()
    with session_factory() as session:
        rows = pending(session, limit=limit)
        for row in rows:
            try:
                if row.kind == "incident":
                    body = dict(row.payload["message"])
                    body["proposals"] = [ProposalView(**{**p, "skipped": [tuple(s) for s in p["skipped"]]})
                                         for p in body["proposals"]]
                    posted = notifier.post_incident(row.channel, IncidentMessage(**body),
                                                    render_chart(row.payload.get("chart", {})))
                else:
                    posted = notifier.post_summary(row.channel, _summary(row.payload["summary"]))
            except SlackDeliveryError as exc:
                error, retryable = delivery_failure(exc)
                mark_failed(session, row.id, error=f"{exc.method}: {error}", retryable=retryable)
                report.retry_later += retryable
                report.failed += not retryable
                log.warning("slack message %s not delivered (%s); %s", row.id, error,
                            "will retry" if retryable else "gave up")
            else:
                mark_sent(session, row.id, channel=posted.channel, ts=posted.ts, at=now)
                report.sent += 1
            session.commit()
    return report
