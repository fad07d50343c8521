"""Real demand shapes for synthetic shops: NAB tweet-volume series (``data/real_traffic``, MIT).

A series is summed from 5-minute values to hours and divided by its mean, so it is a demand
multiplier with mean 1 (news spikes go to 10-20x, collection gaps to 0). A simulated local hour maps
to the series hour ``shift_weeks`` whole weeks earlier (weekdays line up); hours outside the
recorded span wrap around by whole weeks (the first seven weeks of the series).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from functools import cache
from importlib.resources import files

SERIES: tuple[str, ...] = ("Twitter_volume_GOOG", "Twitter_volume_FB", "Twitter_volume_IBM", "Twitter_volume_CRM")
WEEK = timedelta(days=7)
_WRAP_WEEKS = 7


def _data_file(name: str) -> str:
    return files("tools.synth").joinpath("data", "real_traffic", name).read_text(encoding="utf-8")


@cache
def hourly_series(name: str) -> tuple[datetime, tuple[float, ...]]:
    """(first hour, multipliers per hour from it): 5-minute values summed to hours over the mean."""
    if name not in SERIES:
        raise ValueError(f"unknown demand series {name!r}; expected one of {', '.join(SERIES)}")
    sums: dict[datetime, float] = {}
    for row in csv.DictReader(_data_file(f"{name}.csv").splitlines()):
        hour = datetime.fromisoformat(row["timestamp"]).replace(minute=0, second=0, microsecond=0)
        sums[hour] = sums.get(hour, 0.0) + float(row["value"])
    first, last = min(sums), max(sums)
    count = int((last - first).total_seconds() // 3600) + 1
    values = [sums.get(first + timedelta(hours=k), 0.0) for k in range(count)]
    mean = sum(values) / len(values)
    return first, tuple(v / mean for v in values)


@cache
def anomaly_windows(name: str) -> tuple[tuple[datetime, datetime], ...]:
    """NAB's labelled windows for a series (source local time, naive)."""
    data = json.loads(_data_file("anomaly_windows.json"))
    return tuple((datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in data.get(f"{name}.csv", []))


def multiplier(name: str, local_hour: datetime, shift_weeks: int) -> float:
    """Demand multiplier for a simulated local hour (naive), from the series ``shift_weeks`` earlier."""
    first, values = hourly_series(name)
    index = int((local_hour.replace(tzinfo=None) - shift_weeks * WEEK - first).total_seconds() // 3600)
    span = _WRAP_WEEKS * 168
    if not 0 <= index < len(values):
        index %= span
    return values[index]


def shift_weeks_for(name: str, local_target: datetime, series_time: datetime) -> int:
    """Whole weeks that map ``series_time`` (a series timestamp) to about ``local_target``."""
    del name
    return round((local_target.replace(tzinfo=None) - series_time) / WEEK)
