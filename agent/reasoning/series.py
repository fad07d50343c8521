"""Hourly series pulled out of ``AuditInputs`` for the read-only tools (pure functions)."""

from __future__ import annotations

from datetime import datetime

from tools.checks.types import AuditInputs
from tools.timeutil import DAY, hours_between

MATCH_KEYS: tuple[str, ...] = (
    "em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id",
    "client_ip_address", "client_user_agent", "fbc", "fbp",
)
HASHING_COUNTERS: tuple[str, ...] = (
    "raw_pii", "placeholder", "uppercase_hex", "not_sha256", "must_not_hash", "malformed",
)
USUAL_WEEKS = 4


def hours(start: datetime, end: datetime) -> list[datetime]:
    return hours_between(start, end)


def event_names(inputs: AuditInputs) -> set[str]:
    """Every event name seen in the ledger or in Meta's counts."""
    names = {row.event_name for row in inputs.event_hours}
    names |= {row.event_name for row in inputs.meta_counts or ()}
    return names


def counts(inputs: AuditInputs, event_name: str, source: str) -> dict[datetime, int]:
    """Hour -> count of one event: ``ledger`` from the ledger, ``browser``/``server`` from Meta."""
    if source == "ledger":
        return {r.hour: r.events for r in inputs.event_hours if r.event_name == event_name}
    return {r.hour: r.count for r in inputs.meta_counts or ()
            if r.event_name == event_name and r.source == source}


def usual(series: dict[datetime, int], hour: datetime, history_start: datetime) -> float | None:
    """Mean count of the same hour of the week over the previous weeks in the history (None: none)."""
    earlier = [hour - week * 7 * DAY for week in range(1, USUAL_WEEKS + 1)]
    values = [series.get(h, 0) for h in earlier if h >= history_start]
    return round(sum(values) / len(values), 1) if values else None


def key_coverage(inputs: AuditInputs, key: str, event_name: str | None,
                 start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, events, events carrying ``key``) per hour in [start, end)."""
    totals: dict[datetime, list[int]] = {h: [0, 0] for h in hours_between(start, end)}
    for row in inputs.event_hours:
        if row.hour in totals and (event_name is None or row.event_name == event_name):
            totals[row.hour][0] += row.events
            totals[row.hour][1] += row.key_counts.get(key, 0)
    return [(h, n, k) for h, (n, k) in sorted(totals.items())]


def hashing_totals(inputs: AuditInputs, event_name: str | None,
                   start: datetime, end: datetime) -> dict[str, object]:
    """Events in the span, each hashing counter summed per field, and the highest top-value share."""
    events = 0
    flags: dict[str, dict[str, int]] = {name: {} for name in HASHING_COUNTERS}
    top: dict[str, float] = {}
    for row in inputs.event_hours:
        if not start <= row.hour < end or (event_name is not None and row.event_name != event_name):
            continue
        events += row.events
        for name in HASHING_COUNTERS:
            for field_name, n in getattr(row, name).items():
                flags[name][field_name] = flags[name].get(field_name, 0) + n
        for field_name, share in row.top_value_share.items():
            top[field_name] = max(top.get(field_name, 0.0), round(share, 3))
    return {"events": events, "flags": {k: v for k, v in flags.items() if v}, "top_value_share": top}
