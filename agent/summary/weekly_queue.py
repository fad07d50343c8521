"""When the weekly report is due, queue it once per Slack channel and email address; post and mail it.

A channel's report is due at its weekday and hour (``weekly_day``, ``weekly_hour``: Monday 09:00 by
default) in its time zone; like the hourly summaries, a channel follows its first pixel (by id), so
set them per channel in ``[channels."#name"]``. Pixels with ``weekly_report = "off"`` are left out;
email addresses get it where their pixels' summaries go by email (``email_summaries`` not ``off``).

It is queued in the outbox under ``weekly:<channel>:<local date>`` (``email-weekly:`` for email), so
replicas and rounds that try at the same time queue it once, and the outbox's claim posts it once.
It waits until the week's last hour is audited (or its audit failed) for every pixel of the channel,
at most ``WAIT_AT_MOST``: then it goes with what the ledger has, provided the agent audited any of
those pixels that week (a fresh install does not report a week it never watched). A week whose
report could not be queued within ``CATCH_UP`` (the service was down) is not sent late.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from html import escape
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.summary.queue import settled_pixels
from agent.summary.weekly import WeeklyReport, build_weekly, local_days, week_end_at, week_label
from tools.ledger.models import Audit
from tools.ledger.outbox import OutboxMessage, enqueue, existing_keys, incident_posts
from tools.ledger.pixels import PixelConfig
from tools.timeutil import as_utc, parse_iso

if TYPE_CHECKING:
    from agent.slack.notifier import PostedMessage, SlackNotifier

log = logging.getLogger(__name__)
WAIT_AT_MOST = timedelta(hours=6)
CATCH_UP = timedelta(hours=72)  # as far back as the scheduler catches up audits
LATE_AFTER = timedelta(hours=7)  # WAIT_AT_MOST, and the hour it takes to be posted after that
SLACK_KIND, EMAIL_KIND = "weekly", "email_weekly"


@dataclass(frozen=True)
class WeeklyAudience:
    target: str  # Slack channel, or "email:<address>"
    medium: str  # "slack" | "email"
    pixels: tuple[PixelConfig, ...]  # sorted by id

    @property
    def first(self) -> PixelConfig:
        return self.pixels[0]

    @property
    def timezone(self) -> str:
        return self.first.timezone

    def due_at(self, now: datetime) -> datetime:
        """The end of the latest week whose report is due by ``now``."""
        return week_end_at(now, timezone=self.timezone, weekday=self.first.weekly_day, hour=self.first.weekly_hour)

    def key(self, week_end: datetime) -> str:
        prefix = "weekly" if self.medium == "slack" else "email-weekly"
        day = as_utc(week_end).astimezone(ZoneInfo(self.timezone)).date()  # the local date it ends on
        return f"{prefix}:{self.target}:{day.isoformat()}"


def weekly_audiences(pixels: Iterable[PixelConfig]) -> list[WeeklyAudience]:
    groups: dict[tuple[str, str], list[PixelConfig]] = defaultdict(list)
    for pixel in pixels:
        if pixel.weekly_report != "on":
            continue
        if pixel.slack_channel:
            groups[("slack", pixel.slack_channel)].append(pixel)
        if pixel.email_summaries != "off":
            for address in pixel.email_to:
                groups[("email", f"email:{address.lower()}")].append(pixel)
    return [WeeklyAudience(target=target, medium=medium, pixels=tuple(sorted(members, key=lambda p: p.id)))
            for (medium, target), members in sorted(groups.items())]


def _watched(session: Session, pixel_ids: Sequence[str], start: datetime, end: datetime) -> bool:
    """Did the agent audit any of these pixels during the week?"""
    return session.scalar(select(col(Audit.id)).where(
        col(Audit.pixel_id).in_(list(pixel_ids)), col(Audit.window_end) > start,
        col(Audit.window_end) <= end).limit(1)) is not None


def enqueue_weekly(session: Session, *, audience: WeeklyAudience, week_end: datetime) -> bool:
    """Build the audience's report of the week ending ``week_end`` and queue it; False when queued
    already. No commit."""
    report = build_weekly(session, pixels=audience.pixels, end=week_end, timezone=audience.timezone)
    return enqueue(session, dedupe_key=audience.key(week_end), channel=audience.target,
                   kind=SLACK_KIND if audience.medium == "slack" else EMAIL_KIND,
                   payload={"report": report.to_json()}, at=week_end)


def enqueue_weekly_due(session: Session, *, pixels: Sequence[PixelConfig], now: datetime) -> int:
    """Queue every weekly report due at ``now`` and not queued yet (see the module docstring);
    returns how many. No commit. Cheap when nothing is due: one query for the keys."""
    now = as_utc(now)
    due = [(audience, audience.due_at(now)) for audience in weekly_audiences(pixels)]
    due = [(audience, end) for audience, end in due if now - end <= CATCH_UP]
    have = existing_keys(session, [audience.key(end) for audience, end in due])
    queued = 0
    for audience, end in due:
        if audience.key(end) in have:
            continue
        ids = [p.id for p in audience.pixels]
        settled = settled_pixels(session, ids, [end])
        ready = all((pixel_id, end) in settled for pixel_id in ids)
        if not ready and not (now - end >= WAIT_AT_MOST
                              and _watched(session, ids, local_days(end, audience.timezone)[0][1], end)):
            continue
        try:
            # A savepoint: a report that cannot be built must not undo or block the hourly summaries
            # queued in the same transaction; it is tried again next round.
            with session.begin_nested():
                queued += enqueue_weekly(session, audience=audience, week_end=end)
        except Exception as exc:
            log.error("weekly report for %s could not be built: %s", audience.target, type(exc).__name__,
                      exc_info=exc)
    return queued


# --- delivery ---------------------------------------------------------------------------------------

def post_weekly_row(session: Session, notifier: SlackNotifier, row: OutboxMessage, now: datetime
                    ) -> PostedMessage:
    """Post the report's message, then its picture in the channel right after it. Raises
    ``SlackDeliveryError`` when the message was not posted (the row stays pending). A picture that
    fails to upload is logged, not retried: retrying would post the message twice."""
    from agent.slack.notifier import PostedMessage, SlackDeliveryError, call_slack
    from agent.slack.summary_blocks import thread_link
    from agent.summary.weekly_chart import render_png
    from agent.summary.weekly_text import SLACK_DETAILED, fallback, slack_blocks

    report = WeeklyReport.from_json(row.payload["report"])
    ids = [incident.id for pixel in report.pixels[:SLACK_DETAILED] for incident in pixel.open_incidents]
    links = {incident_id: thread_link(channel, ts) for incident_id, (channel, ts)
             in incident_posts(session, ids).items()}
    late = now if as_utc(now) - parse_iso(report.week_end) > LATE_AFTER else None
    posted = notifier.post_blocks(row.channel, slack_blocks(report, links=links, late_sent_at=late),
                                  fallback(report))
    png = render_png(report)
    try:
        call_slack("files.upload", lambda: notifier.client.files_upload_v2(
            channel=posted.channel, file=png, filename="weekly.png", title=f"Weekly health · {week_label(report)}",
            alt_txt="Coverage, server/browser ratio and EMQ of each pixel over the week, worst first"))
    except SlackDeliveryError as exc:
        log.warning("weekly picture for %s not uploaded: %s", posted.channel, exc.error)
        return posted
    return PostedMessage(channel=posted.channel, ts=posted.ts, chart_uploaded=True)


def weekly_email(row: OutboxMessage) -> EmailMessage:
    """The report for one address: the text, and the HTML with the picture inline."""
    from email.utils import make_msgid

    from agent.email.compose import _message, _page
    from agent.summary.weekly_chart import render_png
    from agent.summary.weekly_text import TITLE, render_text, tally

    report = WeeklyReport.from_json(row.payload["report"])
    text = render_text(report)
    cid = make_msgid(domain="capi-agent.local")[1:-1]
    html = _page(f"<h2>{escape(TITLE)}</h2><p>{escape(week_label(report))} · {escape(tally(report))}</p>"
                 f"<p><img src=\"cid:{cid}\" alt=\"Coverage, server/browser ratio and EMQ of each pixel over "
                 f"the week, worst first\" width=\"960\"></p><pre>{escape(text)}</pre>")
    return _message(to=row.channel.removeprefix("email:"), subject=f"[capi-agent] Weekly report "
                    f"{week_label(report)}: {tally(report)}", text=text + "\n", html=html,
                    chart_png=render_png(report), chart_cid=cid)
