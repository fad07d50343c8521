"""One clock for the whole house: every audit, check and fix takes the time it runs "at".

All datetimes inside tools/ are timezone-aware UTC. Helpers here convert at the edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Meta rejects a whole request when any event_time is older than this (physical_store: 62 days).
META_MAX_EVENT_AGE = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (SQLite returns them naive)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp ('Z' allowed); naive input is UTC."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def to_iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def floor_hour(value: datetime) -> datetime:
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


def from_unix(seconds: int | float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def to_unix(value: datetime) -> int:
    return int(as_utc(value).timestamp())


def audit_window(at: datetime) -> tuple[datetime, datetime]:
    """The hour an audit run "at" a time looks at: the last complete clock hour before it."""
    end = floor_hour(at)
    return end - HOUR, end


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Hour starts in [start, end), both floored to the hour."""
    out: list[datetime] = []
    hour = floor_hour(start)
    stop = floor_hour(end)
    while hour < stop:
        out.append(hour)
        hour += HOUR
    return out
