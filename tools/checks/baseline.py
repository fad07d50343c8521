"""Hour-of-week aware, noise-aware baselines for hourly counts.

The expected count for an hour blends two views of the past:
- the same hour of the week in previous weeks (up to ``Thresholds.baseline_weeks``), which knows
  that Saturday 3 a.m. is quiet;
- the same hour of the day on the recent days of this week, scaled by how busy that weekday is
  compared with the audited weekday (weekday levels learned from the history), which follows a
  shop that has grown since last month and works with only a few days of history.

The noise model is Poisson (variance = mean) plus the extra dispersion seen among the reference
hours, so a series that is naturally jumpy needs a bigger deviation before it counts as anomalous.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from tools.timeutil import DAY, HOUR

WEEK = timedelta(days=7)
# Recent days weigh half a previous week: the same weekday is the better witness.
DAILY_WEIGHT = 0.5
# Weekday levels need this many days of history to be trusted; before that, every day counts alike.
MIN_DAYS_FOR_WEEKDAY_LEVELS = 14
# How many reference hours the observed dispersion needs before it is fully trusted.
DISPERSION_PRIOR_REFS = 3


@dataclass(frozen=True)
class Expectation:
    """Expected count over one or more hours, with the variance of the noise around it."""

    expected: float
    variance: float
    references: int

    def z(self, observed: float) -> float:
        """Signed distance of ``observed`` from the expectation in noise units."""
        return (observed - self.expected) / math.sqrt(self.variance + 1.0)

    def __add__(self, other: Expectation) -> Expectation:
        return Expectation(
            self.expected + other.expected,
            self.variance + other.variance,
            min(self.references, other.references),
        )


@lru_cache(maxsize=4096)
def _local_day(tz: ZoneInfo, hour: datetime) -> tuple[int, datetime]:
    local = hour.astimezone(tz)
    return local.weekday(), local.replace(hour=0, minute=0, second=0, microsecond=0)


@lru_cache(maxsize=64)
def _local_days(tz: ZoneInfo, start: datetime, end: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """(hour, local day start) for every hour in [start, end): the same for every series of an audit,
    so the time-zone arithmetic is done once per audit rather than once per series."""
    out = []
    hour = start
    while hour < end:
        out.append((hour, _local_day(tz, hour)[1]))
        hour += HOUR
    return tuple(out)


class HourlyBaseline:
    """Baseline of one hourly series. Hours before ``known_from`` are unknown, not zero.

    ``series`` maps hour starts (UTC) to counts; a missing hour in the known range counts as zero.
    """

    def __init__(
        self,
        series: Mapping[datetime, float],
        *,
        known_from: datetime,
        until: datetime,
        weeks: int = 4,
        timezone: str = "UTC",
    ) -> None:
        self._series = series
        self._known_from = known_from
        self._until = until
        self._weeks = max(1, weeks)
        self._tz = ZoneInfo(timezone)
        self._levels = self._weekday_levels()

    def _local_day(self, hour: datetime) -> tuple[int, datetime]:
        return _local_day(self._tz, hour)

    def _weekday_levels(self) -> dict[int, float]:
        """Weekday -> busyness relative to the average day (1.0 when history is too short)."""
        days: dict[datetime, float] = defaultdict(float)
        hours_seen: dict[datetime, int] = defaultdict(int)
        for hour, day in _local_days(self._tz, self._known_from, self._until):
            days[day] += self._series.get(hour, 0)
            hours_seen[day] += 1
        full = {day: value for day, value in days.items() if hours_seen[day] >= 23}
        if len(full) < MIN_DAYS_FOR_WEEKDAY_LEVELS:
            return {}
        by_weekday: dict[int, list[float]] = defaultdict(list)
        for day, value in full.items():
            by_weekday[day.weekday()].append(value)
        overall = statistics.fmean(full.values())
        if overall <= 0:
            return {}
        return {wd: statistics.fmean(values) / overall for wd, values in by_weekday.items()}

    def _level(self, hour: datetime) -> float:
        weekday, _ = self._local_day(hour)
        return self._levels.get(weekday, 1.0) or 1.0

    def _known(self, hour: datetime) -> bool:
        return self._known_from <= hour < self._until

    def expect(self, hour: datetime) -> Expectation | None:
        """Expected count for ``hour``; None when no comparable hour of history is known."""
        weekly = [
            float(self._series.get(ref, 0))
            for k in range(1, self._weeks + 1)
            if self._known(ref := hour - k * WEEK)
        ]
        target_level = self._level(hour)
        daily = [
            float(self._series.get(ref, 0)) * target_level / self._level(ref)
            for d in range(1, 7)
            if self._known(ref := hour - d * DAY)
        ]
        if not weekly and not daily:
            return None
        weight_w, weight_d = float(len(weekly)), DAILY_WEIGHT * len(daily)
        mean_w = statistics.fmean(weekly) if weekly else 0.0
        mean_d = statistics.fmean(daily) if daily else 0.0
        expected = (weight_w * mean_w + weight_d * mean_d) / (weight_w + weight_d)
        refs = weekly + daily
        spread = statistics.variance(refs) if len(refs) > 1 else expected
        # Poisson part, the dispersion beyond Poisson seen in the references (shrunk when there are
        # few of them: two reference hours say little about spread), and a small proportional term
        # so that very large series are not judged on sampling noise alone.
        shrink = len(refs) / (len(refs) + DISPERSION_PRIOR_REFS)
        variance = expected + shrink * max(0.0, spread - expected) + (0.05 * expected) ** 2
        return Expectation(expected, variance, len(refs))

    def expect_span(self, hours: Iterable[datetime]) -> Expectation | None:
        """Expected total over several hours (None if any hour has no history)."""
        result: Expectation | None = None
        for hour in hours:
            one = self.expect(hour)
            if one is None:
                return None
            result = one if result is None else result + one
        return result


def judged_span(
    baseline: HourlyBaseline,
    window: list[datetime],
    *,
    min_expected: float,
    wanted_expected: float,
    max_hours: int,
    earliest: datetime,
) -> tuple[list[datetime], Expectation] | None:
    """The hours to judge a series on, and their expectation.

    Starts with the audited window and, for a quiet series, pools the hours before it until the
    expected total reaches ``wanted_expected`` (enough for a zero to be meaningful) or
    ``max_hours``. Returns None when even the pooled expectation stays below ``min_expected``:
    such a series is too small to raise alarms on noise.
    """
    hours = list(window)
    expectation = baseline.expect_span(hours)
    if expectation is None:
        return None
    while expectation.expected < wanted_expected and len(hours) < max_hours:
        previous = hours[0] - HOUR
        if previous < earliest:
            break
        more = baseline.expect(previous)
        if more is None:
            break
        hours.insert(0, previous)
        expectation = expectation + more
    if expectation.expected < min_expected:
        return None
    return hours, expectation
