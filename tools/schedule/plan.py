"""Which hours are due for an audit: every complete hour since the last audited one, once the grace
period has let late events and Meta's statistics settle, bounded by how far back catch-up may go."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tools.timeutil import HOUR, as_utc, floor_hour

DEFAULT_GRACE = timedelta(minutes=10)
DEFAULT_MAX_CATCH_UP = 72  # hours


@dataclass(frozen=True)
class HourPlan:
    """Window ends to audit (oldest first) and those too old to catch up (oldest first)."""

    due: list[datetime] = field(default_factory=list)
    skipped: list[datetime] = field(default_factory=list)


def latest_due_hour(now: datetime, *, grace: timedelta = DEFAULT_GRACE) -> datetime:
    """End of the newest hour that may be audited at ``now``: complete, and ``grace`` old."""
    return floor_hour(as_utc(now) - grace)


def plan_hours(*, last_done: datetime | None, now: datetime, grace: timedelta = DEFAULT_GRACE,
               max_catch_up: int = DEFAULT_MAX_CATCH_UP) -> HourPlan:
    """The hours (as window ends) after ``last_done`` up to ``latest_due_hour(now)``.

    At most ``max_catch_up`` of the newest are due; older ones are listed as skipped. With no
    history (``last_done`` None) only the latest hour is due: an agent starting fresh does not
    audit the past it never watched."""
    if max_catch_up < 1:
        raise ValueError("max_catch_up must be at least 1 hour")
    latest = latest_due_hour(now, grace=grace)
    if last_done is None:
        return HourPlan(due=[latest])
    first = floor_hour(last_done) + HOUR
    hours: list[datetime] = []
    end = first
    while end <= latest:
        hours.append(end)
        end += HOUR
    if len(hours) <= max_catch_up:
        return HourPlan(due=hours)
    return HourPlan(due=hours[-max_catch_up:], skipped=hours[:-max_catch_up])


def due_hours(*, last_done: datetime | None, now: datetime, grace: timedelta = DEFAULT_GRACE,
              max_catch_up: int = DEFAULT_MAX_CATCH_UP) -> list[datetime]:
    """Window ends to audit at ``now``, oldest first (see ``plan_hours``)."""
    return plan_hours(last_done=last_done, now=now, grace=grace, max_catch_up=max_catch_up).due
