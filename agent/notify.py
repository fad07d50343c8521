"""From audits to Slack and email: which incidents are announced, what the message says, and delivery.

An audit enqueues one outbox message per new, escalated or resolved incident (ongoing incidents stay
silent) for the pixel's Slack channel and for each of its ``email_to`` addresses, with the chart's
data computed from the ledger's snapshots of Meta's counts; then the hourly summaries of every channel
the audit completed (``agent.summary.queue``). A sender posts pending messages in order per channel;
Slack failures leave them pending (retried), so nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from agent.slack.blocks import IncidentMessage, PixelStatusLine, ProposalView, SummaryMessage
from agent.slack.chart import ChartSeries, render_parity_chart
from agent.slack.notifier import PostedMessage, SlackDeliveryError, SlackNotifier
from agent.slack.summaries import SUMMARY_KINDS, post_summary_row
from agent.summary.queue import enqueue_ready, sweep_hours
from tools.diagnosis.catalogue import cause_info
from tools.fixes.planner import get_proposal
from tools.fixes.preview import records_text
from tools.ledger.outbox import (
    OutboxMessage,
    claim_for_delivery,
    enqueue,
    mark_failed,
    mark_sent,
    pending,
    release,
)
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts
from tools.timeutil import HOUR, parse_iso, to_iso

log = logging.getLogger(__name__)
ANNOUNCED = ("new", "escalated", "resolved")
SLACK_KINDS = ("incident", *SUMMARY_KINDS)
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
    series = [ChartSeries(event_name="all", source=source,  # type: ignore[arg-type]
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


def _post(session: Session, notifier: SlackNotifier, row: OutboxMessage, now: datetime) -> PostedMessage | None:
    if row.kind == "incident":
        body = dict(row.payload["message"])
        body["proposals"] = [ProposalView(**{**p, "skipped": [tuple(s) for s in p["skipped"]]})
                             for p in body["proposals"]]
        return notifier.post_incident(row.channel, IncidentMessage(**body),
                                      render_chart(row.payload.get("chart", {})))
    if "title" in row.payload.get("summary", {}):  # a digest queued by an earlier version
        return notifier.post_summary(row.channel, _summary(row.payload["summary"]))
    return post_summary_row(session, notifier, row, now)


def deliver_outbox(session_factory: Callable[[], Session], notifier: SlackNotifier, *, now: datetime,
                   limit: int = 50) -> OutboxReport:
    """Post pending Slack messages, oldest first; a failure is counted and retried on the next call.

    Order holds per channel: once a channel's message fails (or waits for its thread), its later
    messages wait too. Each row is claimed before it is posted, so replicas do not post it twice."""
    report = OutboxReport()
    with session_factory() as session:
        rows = pending(session, limit=limit, kinds=SLACK_KINDS, now=now)
        waiting: set[str] = set()
        for row in rows:
            row_id, channel = int(row.id or 0), row.channel
            if channel in waiting or not claim_for_delivery(session, row_id, now=now):
                continue
            try:
                posted = _post(session, notifier, row, now)
            except SlackDeliveryError as exc:
                session.rollback()
                error, retryable = delivery_failure(exc)
                mark_failed(session, row_id, error=f"{exc.method}: {error}", retryable=retryable, now=now)
                report.retry_later += retryable
                report.failed += not retryable
                if retryable:
                    waiting.add(channel)
                log.warning("slack message %s not delivered (%s); %s", row_id, error,
                            "will retry" if retryable else "gave up")
            except Exception as exc:  # a message that cannot be built must not block the others forever
                session.rollback()
                mark_failed(session, row_id, error=f"build: {type(exc).__name__}", retryable=False, now=now)
                report.failed += 1
                log.error("slack message %s could not be built: %s", row_id, type(exc).__name__, exc_info=exc)
            else:
                if posted is None:
                    release(session, row_id)
                    waiting.add(channel)
                else:
                    mark_sent(session, row_id, channel=posted.channel, ts=posted.ts, at=now)
                    report.sent += 1
            session.commit()
    return report
