"""The usual level of a pixel's event counts: a same-hour-of-week median over the past weeks.

Pure functions over ``{hour: count}``. A week counts as a sample only if the pixel had data by then
(``since``): a shop that started last Tuesday has no "usual" for the Monday before. With no full week
of history, the same hours of the previous days stand in (flagged), so a new pixel is not shown
without any reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class UsualLevel:
    value: float
    samples: int
    basis: str  # "weekly" (same hours of past weeks) | "daily" (same hours of past days)


def window_total(hourly: Mapping[datetime, float], start: datetime, end: datetime) -> float:
    """Sum of the hourly counts in [start, end)."""
    total, hour = 0.0, start
    while hour < end:
        total += hourly.get(hour, 0.0)
        hour += HOUR
    return total


def usual_level(hourly: Mapping[datetime, float], *, start: datetime, end: datetime,
                since: datetime | None, weeks: int = 4, days: int = 6) -> UsualLevel | None:
    """Median total of [start, end) shifted back by 1..``weeks`` weeks (only shifts at or after
    ``since``, the first hour with data); else by 1..``days`` days; None without any history."""
    for step, count, basis in ((WEEK, weeks, "weekly"), (DAY, days, "daily")):
        samples = [window_total(hourly, start - n * step, end - n * step) for n in range(1, count + 1)
                   if since is not None and start - n * step >= since]
        if samples:
            return UsualLevel(value=float(median(samples)), samples=len(samples), basis=basis)
    return None
