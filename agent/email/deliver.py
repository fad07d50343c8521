"""The email sender of the outbox: rows ``email_incident`` and ``email_summary``, channel
``email:<address>``, sent oldest first; a failure leaves the row pending (retried) like Slack's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy.orm import Session

from agent.announce import chart_data, render_chart  # the same chart as the Slack message
from agent.email.compose import incident_email, summary_email
from agent.email.smtp import EmailDeliveryError, Mailer
from agent.slack.summaries import incident_links, late_at
from agent.slack.summary_blocks import thread_link
from agent.summary.model import Summary
from tools.ledger.outbox import OutboxMessage, claim_for_delivery, incident_posts, mark_failed, mark_sent, pending
from tools.timeutil import parse_iso

log = logging.getLogger(__name__)
EMAIL_KINDS = ("email_incident", "email_summary", "email_weekly")


@dataclass
class EmailReport:
    sent: int = 0
    retry_later: int = 0
    failed: int = 0


def compose(session: Session, row: OutboxMessage, *, now: datetime) -> EmailMessage:
    to = row.channel.removeprefix("email:")
    if row.kind == "email_incident":
        posts = incident_posts(session, [row.incident_id] if row.incident_id else [])
        link = thread_link(*posts[row.incident_id]) if row.incident_id in posts else None
        return incident_email(row.payload["message"], to=to, chart_png=render_chart(row.payload.get("chart", {})),
                              thread_link=link)
    if row.kind == "email_weekly":
        from agent.summary.weekly_queue import weekly_email

        return weekly_email(row)
    summary = Summary.from_json(row.payload["summary"])
    chart = render_chart(summary_chart(session, summary))
    return summary_email(summary, to=to, links=incident_links(session, summary),
                         late=late_at(summary, now) is not None, chart_png=chart)


def summary_chart(session: Session, summary: Summary) -> dict:
    """The chart data of a summary: its pixels' browser and server counts added up (two days), against
    the same hours a week earlier."""
    end = parse_iso(summary.window_end)
    merged: dict[str, dict[str, float]] = {}
    for pixel in summary.pixels:
        data = chart_data(session, pixel_id=pixel.pixel_id, event_names=[], window_end=end)
        for source, points in data["series"].items():
            for hour, count in points.items():
                merged.setdefault(source, {}).setdefault(hour, 0)
                merged[source][hour] += count
    noun = "pixel" if len(summary.pixels) == 1 else "pixels"
    return {"title": f"{len(summary.pixels)} {noun}, all events: browser vs server vs last week",
            "window_end": summary.window_end, "series": merged}


def deliver_email_outbox(session_factory: Callable[[], Session], mailer: Mailer, *, now: datetime,
                         limit: int = 50) -> EmailReport:
    """Send pending emails; per recipient, a failure holds back that recipient's later emails."""
    report = EmailReport()
    with session_factory() as session:
        waiting: set[str] = set()
        for row in pending(session, limit=limit, kinds=EMAIL_KINDS, now=now):
            row_id, channel = int(row.id or 0), row.channel
            if channel in waiting or not claim_for_delivery(session, row_id, now=now):
                continue
            try:
                message_id = mailer.send(compose(session, row, now=now))
            except EmailDeliveryError as exc:
                session.rollback()
                mark_failed(session, row_id, error=f"smtp: {exc.error}", retryable=exc.retryable, now=now)
                report.retry_later += exc.retryable
                report.failed += not exc.retryable
                if exc.retryable:
                    waiting.add(channel)
                log.warning("email %s not sent (%s); %s", row_id, exc.error,
                            "will retry" if exc.retryable else "gave up")
            except Exception as exc:  # an email that cannot be built must not block the others forever
                session.rollback()
                mark_failed(session, row_id, error=f"build: {type(exc).__name__}", retryable=False, now=now)
                report.failed += 1
                log.error("email %s could not be built: %s", row_id, type(exc).__name__, exc_info=exc)
            else:
                mark_sent(session, row_id, channel=channel, ts=message_id[:64], at=now)
                report.sent += 1
            session.commit()
    return report
