"""When a channel's hour is complete, queue its summary (Slack and email) in the outbox, once.

A channel's hour is *settled* when each of its pixels has an audit of that hour (from any path: the
scheduler, ``capi-agent audit``, ``/capi audit``) or a failed scheduled audit. The path that settles it
queues the summary under ``summary:<channel>:<hour>``; the outbox's unique key makes that exactly once
across replicas, catch-up rounds and re-audits. ``enqueue_settled`` sweeps recent hours after each
scheduler round, for the hours that only a failed audit settled or that two replicas finished at the
same moment (each seeing the other's audit still running).

Slack threads: the hourly summaries of a day are replies under one parent message per channel and
day (``summary-day:<channel>:<day>``, posted with the first summary and edited to show the latest
hour). A day runs from the digest hour (09:00 in the channel's time zone) to the next one, so the
daily digest, queued with the hour that ends at 09:00, is the day's closing reply.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.summary.collect import build_summary
from tools.ledger.models import Audit
from tools.ledger.outbox import enqueue, existing_keys
from tools.ledger.pixels import PixelConfig
from tools.schedule.claims import AuditClaim
from tools.timeutil import HOUR, as_utc, floor_hour, to_iso

DIGEST_HOUR = 9
DAY = timedelta(days=1)
SWEEP_HOURS = 72  # as far back as the scheduler catches up


@dataclass(frozen=True)
class Audience:
    """Where a group of pixels' summaries go: a Slack channel or an email address."""

    target: str  # Slack channel id/name, or "email:<address>"
    medium: str  # "slack" | "email"
    pixels: tuple[PixelConfig, ...]  # every pixel with summaries for this target (hourly or daily)

    @property
    def hourly(self) -> list[PixelConfig]:
        return [p for p in self.pixels if _mode(p, self.medium) == "hourly"]

    @property
    def timezone(self) -> str:
        # A channel shared by pixels in several zones follows its first pixel (by id).
        return min(self.pixels, key=lambda p: p.id).timezone


def _mode(pixel: PixelConfig, medium: str) -> str:
    return pixel.summaries if medium == "slack" else pixel.email_summaries


def audiences(pixels: Iterable[PixelConfig]) -> list[Audience]:
    """Slack channels and email addresses with the pixels whose summaries go there."""
    groups: dict[tuple[str, str], list[PixelConfig]] = defaultdict(list)
    for pixel in pixels:
        if pixel.slack_channel and pixel.summaries != "off":
            groups[("slack", pixel.slack_channel)].append(pixel)
        if pixel.email_summaries != "off":
            for address in pixel.email_to:
                groups[("email", f"email:{address.lower()}")].append(pixel)
    return [Audience(target=target, medium=medium, pixels=tuple(sorted(members, key=lambda p: p.id)))
            for (medium, target), members in sorted(groups.items())]


def thread_day(window_end: datetime, timezone: str, digest_hour: int = DIGEST_HOUR) -> date:
    """The summary day an hour belongs to: days run from ``digest_hour`` to ``digest_hour`` local."""
    local = as_utc(window_end).astimezone(ZoneInfo(timezone))
    return (local - timedelta(hours=digest_hour, seconds=1)).date()


def day_bounds(day: date, timezone: str, digest_hour: int = DIGEST_HOUR) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    start = datetime(day.year, day.month, day.day, digest_hour, tzinfo=zone)
    end = datetime((day + DAY).year, (day + DAY).month, (day + DAY).day, digest_hour, tzinfo=zone)
    return as_utc(start), as_utc(end)


def is_digest_hour(window_end: datetime, timezone: str, digest_hour: int = DIGEST_HOUR) -> bool:
    local = as_utc(window_end).astimezone(ZoneInfo(timezone))
    return local.hour == digest_hour and local.minute == 0


def settled_pixels(session: Session, pixel_ids: Sequence[str], hours: Sequence[datetime]
                   ) -> set[tuple[str, datetime]]:
    """(pixel, hour end) pairs with an audit or a failed scheduled audit, or that the scheduler went
    past: it audits a pixel's hours in order, so an hour older than one it claimed will not come."""
    if not pixel_ids or not hours:
        return set()
    low, high = as_utc(min(hours)), as_utc(max(hours))
    done = session.execute(select(col(Audit.pixel_id), col(Audit.window_end)).where(
        col(Audit.pixel_id).in_(list(pixel_ids)), col(Audit.window_end) >= low,
        col(Audit.window_end) <= high)).all()
    failed = session.execute(select(col(AuditClaim.pixel_id), col(AuditClaim.window_end)).where(
        col(AuditClaim.pixel_id).in_(list(pixel_ids)), col(AuditClaim.status) == "failed",
        col(AuditClaim.window_end) >= low, col(AuditClaim.window_end) <= high)).all()
    settled = {(pixel_id, as_utc(end)) for pixel_id, end in [*done, *failed]}
    # Hours inside the span the scheduler watched the pixel but skipped (a catch-up that started
    # after them for a pixel that never succeeded): not audited, and never will be.
    spans = session.execute(select(col(AuditClaim.pixel_id), func.min(col(AuditClaim.window_end)),
                                   func.max(col(AuditClaim.window_end)))
                            .where(col(AuditClaim.pixel_id).in_(list(pixel_ids)))
                            .group_by(col(AuditClaim.pixel_id))).all()
    for pixel_id, first, last in spans:
        settled.update((pixel_id, as_utc(hour)) for hour in hours
                       if as_utc(first) <= as_utc(hour) < as_utc(last))
    return settled


def summary_key(audience: Audience, window_end: datetime) -> str:
    prefix = "summary" if audience.medium == "slack" else "email-summary"
    return f"{prefix}:{audience.target}:{to_iso(window_end)}"


def day_key(audience: Audience, day: date) -> str:
    return f"summary-day:{audience.target}:{day.isoformat()}"


def digest_key(audience: Audience, day: date) -> str:
    prefix = "digest" if audience.medium == "slack" else "email-digest"
    return f"{prefix}:{audience.target}:{day.isoformat()}"


def _keys_for(audience: Audience, window_end: datetime) -> list[str]:
    keys = []
    if audience.hourly:
        keys.append(summary_key(audience, window_end))
    if is_digest_hour(window_end, audience.timezone):
        keys.append(digest_key(audience, thread_day(window_end, audience.timezone)))
    return keys


def enqueue_hour(session: Session, *, audience: Audience, window_end: datetime) -> int:
    """Queue the audience's summary of the hour ending ``window_end`` (and the day's parent message,
    and at the digest hour the daily digest); returns how many rows were new. No commit."""
    tz = audience.timezone
    day = thread_day(window_end, tz)
    queued = 0
    hourly = audience.hourly
    slack = audience.medium == "slack"
    parent = day_key(audience, day) if slack and hourly else None
    if hourly:
        summary = build_summary(session, pixels=hourly, start=window_end - HOUR, end=window_end, timezone=tz)
        if parent is not None:
            start, end = day_bounds(day, tz)
            # Queued as of the day's start: the sender posts rows oldest first, and every reply of
            # the day (even of an hour queued later by a catch-up) needs this thread to exist.
            queued += enqueue(session, dedupe_key=parent, channel=audience.target, kind="summary_day",
                              payload={"day": day.isoformat(), "timezone": tz, "day_start": to_iso(start),
                                       "day_end": to_iso(end), "summary": summary.to_json()},
                              at=start)
        queued += enqueue(session, dedupe_key=summary_key(audience, window_end), channel=audience.target,
                          kind="summary" if slack else "email_summary",
                          payload={"summary": summary.to_json(), "parent_key": parent}, at=window_end)
    if is_digest_hour(window_end, tz):
        start, end = day_bounds(day, tz)
        digest = build_summary(session, pixels=list(audience.pixels), start=start, end=end, timezone=tz)
        queued += enqueue(session, dedupe_key=digest_key(audience, day), channel=audience.target,
                          kind="digest" if slack else "email_summary",
                          payload={"summary": digest.to_json(), "parent_key": parent}, at=window_end)
    return queued


def enqueue_ready(session: Session, *, pixels: Sequence[PixelConfig], hours: Iterable[datetime]) -> int:
    """Queue every summary of ``hours`` whose audience is settled and not queued yet. No commit."""
    hours = sorted({floor_hour(as_utc(h)) for h in hours})
    groups = audiences(pixels)
    if not hours or not groups:
        return 0
    ids = sorted({p.id for group in groups for p in group.pixels})
    settled = settled_pixels(session, ids, hours)
    wanted = {key for group in groups for hour in hours for key in _keys_for(group, hour)}
    have = existing_keys(session, wanted)
    queued = 0
    for hour in hours:
        for group in groups:
            keys = _keys_for(group, hour)
            if not keys or all(key in have for key in keys):
                continue
            if all((p.id, hour) in settled for p in group.pixels):
                queued += enqueue_hour(session, audience=group, window_end=hour)
    return queued


def sweep_hours(now: datetime, hours: int = SWEEP_HOURS) -> list[datetime]:
    """The hour ends a sweep looks at: the last ``hours`` complete hours before ``now``."""
    last = floor_hour(as_utc(now))
    return [last - n * HOUR for n in range(hours)]
