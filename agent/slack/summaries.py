"""Posting summaries from the outbox: the day's parent message, the hourly replies in its thread (the
parent edited to show the latest hour) and the daily digest as the day's closing reply.

A reply waits while its parent is still pending (Slack down): the caller keeps the channel's later
rows waiting too, so summaries arrive in order once Slack is back, marked late.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from agent.slack.notifier import PostedMessage, SlackDeliveryError, SlackNotifier
from agent.slack.summary_blocks import (
    day_parent_blocks,
    summary_blocks,
    summary_fallback,
    thread_link,
)
from agent.summary.model import Summary
from tools.ledger.outbox import OutboxMessage, incident_posts, sent_by_key
from tools.timeutil import as_utc, parse_iso

log = logging.getLogger(__name__)
LATE_AFTER = timedelta(hours=1)  # on time: posted within the hour after the summarized window
SUMMARY_KINDS = ("summary_day", "summary", "digest", "weekly")


def incident_links(session: Session, summary: Summary) -> dict[str, str]:
    ids = [incident.id for pixel in summary.pixels for incident in pixel.incidents]
    return {incident_id: thread_link(channel, ts) for incident_id, (channel, ts)
            in incident_posts(session, ids).items()}


def late_at(summary: Summary, now: datetime) -> datetime | None:
    """``now`` when the summary goes out more than ``LATE_AFTER`` after its window ended."""
    return now if as_utc(now) - parse_iso(summary.window_end) > LATE_AFTER else None


def post_summary_row(session: Session, notifier: SlackNotifier, row: OutboxMessage,
                     now: datetime) -> PostedMessage | None:
    """Post one summary row; None when it must wait for its thread's parent to be posted first.
    Raises :class:`SlackDeliveryError` when Slack refuses or cannot be reached."""
    if row.kind == "weekly":  # the weekly report stands on its own (agent.summary.weekly_queue)
        from agent.summary.weekly_queue import post_weekly_row

        return post_weekly_row(session, notifier, row, now)
    summary = Summary.from_json(row.payload["summary"])
    links = incident_links(session, summary)
    if row.kind == "summary_day":
        blocks = day_parent_blocks(summary, day_start=parse_iso(row.payload["day_start"]),
                                   day_end=parse_iso(row.payload["day_end"]), timezone=row.payload["timezone"],
                                   links=links)
        return notifier.post_blocks(row.channel, blocks, summary_fallback(summary))
    late = late_at(summary, now)
    blocks = summary_blocks(summary, links=links, late_sent_at=late)
    text = summary_fallback(summary, late=late is not None)
    parent_key = row.payload.get("parent_key")
    if not parent_key:  # summaries = "daily": the digest stands on its own
        return notifier.post_blocks(row.channel, blocks, text)
    parent = sent_by_key(session, parent_key)
    if parent is None or parent.status == "pending":
        return None
    if parent.status != "sent" or not parent.message_ts:
        # The day's parent could not be posted (e.g. a deleted channel): keep the summary anyway.
        return notifier.post_blocks(row.channel, blocks, text)
    posted = notifier.post_blocks(parent.channel, blocks, text, thread_ts=parent.message_ts)
    if row.kind == "summary" and parent.payload["summary"]["window_end"] != summary.window_end:
        _show_latest_hour(notifier, parent, summary, links)
    return posted


def _show_latest_hour(notifier: SlackNotifier, parent: OutboxMessage, summary: Summary,
                      links: dict[str, str]) -> None:
    """Edit the day's parent to show this hour. A failed edit is only logged: the reply is posted,
    and re-posting it to retry the edit would say the same hour twice."""
    blocks = day_parent_blocks(summary, day_start=parse_iso(parent.payload["day_start"]),
                               day_end=parse_iso(parent.payload["day_end"]),
                               timezone=parent.payload["timezone"], links=links)
    try:
        notifier.update_message(parent.channel, str(parent.message_ts), blocks, summary_fallback(summary))
    except SlackDeliveryError as exc:
        log.warning("could not edit the day's summary message in %s: %s", parent.channel, exc.error)
