"""The Slack sender of the outbox: posts the pending incident messages and summaries that audits queued
(``agent.announce``), oldest first and in order per channel; a Slack failure leaves a message pending
for the next round, so nothing is lost."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from agent.announce import render_chart
from agent.slack.blocks import IncidentMessage, PixelStatusLine, ProposalView, SummaryMessage
from agent.slack.notifier import PostedMessage, SlackDeliveryError, SlackNotifier
from agent.slack.summaries import SUMMARY_KINDS, post_summary_row
from tools.ledger.outbox import OutboxMessage, claim_for_delivery, mark_failed, mark_sent, pending, release
from tools.timeutil import parse_iso

log = logging.getLogger(__name__)
SLACK_KINDS = ("incident", *SUMMARY_KINDS)


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
