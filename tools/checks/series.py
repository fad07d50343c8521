"""Hourly series pulled out of AuditInputs, shared by the checks.

Everything here is pure bookkeeping: which hours are audited, which hours of history are known,
and per-event counts per hour from the ledger or from Meta.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from tools.checks.types import SEVERITY_RANK, AuditInputs, EventHour, Finding, QualitySnapshot, Source
from tools.timeutil import DAY, HOUR, hours_between, to_iso

# At most this many hours (window included) are pooled to judge a low-volume series.
MAX_POOLED_HOURS = 12
# Enough events to judge a share (event_id coverage, duplicates, order matching, key coverage).
MIN_SHARE_EVENTS = 20


def window_hours(inputs: AuditInputs) -> list[datetime]:
    """The audited hours, oldest first (usually one)."""
    return hours_between(inputs.window_start, inputs.window_end) or [inputs.window_start]


def hour_label(hour: datetime) -> str:
    """How an hour is written in evidence: ISO start, UTC."""
    return to_iso(hour)


def span_label(hours: list[datetime]) -> str:
    if len(hours) == 1:
        return hour_label(hours[0])
    return f"{hour_label(hours[0])}..{hour_label(hours[-1] + HOUR)}"


def pooled_hours(inputs: AuditInputs, count: int) -> list[datetime]:
    """The audited hours plus the ``count - len(window)`` hours before them, oldest first."""
    hours = window_hours(inputs)
    while len(hours) < count and hours[0] - HOUR >= inputs.history_start:
        hours.insert(0, hours[0] - HOUR)
    return hours


def ledger_by_event(inputs: AuditInputs) -> dict[str, dict[datetime, EventHour]]:
    """Event name -> hour -> ledger aggregates."""
    out: dict[str, dict[datetime, EventHour]] = defaultdict(dict)
    for row in inputs.event_hours:
        out[row.event_name][row.hour] = row
    return dict(out)


def ledger_counts(inputs: AuditInputs) -> dict[str, dict[datetime, float]]:
    """Event name -> hour -> server events recorded by the ledger."""
    out: dict[str, dict[datetime, float]] = defaultdict(dict)
    for row in inputs.event_hours:
        out[row.event_name][row.hour] = out[row.event_name].get(row.hour, 0) + row.events
    return dict(out)


def meta_counts(inputs: AuditInputs) -> dict[tuple[str, Source], dict[datetime, float]]:
    """(event name, source) -> hour -> count reported by Meta; empty when Meta did not answer."""
    out: dict[tuple[str, Source], dict[datetime, float]] = defaultdict(dict)
    for row in inputs.meta_counts or ():
        series = out[(row.event_name, row.source)]
        series[row.hour] = series.get(row.hour, 0) + row.count
    return dict(out)


def first_hour(series: Iterable[Mapping[datetime, float]]) -> datetime | None:
    """Earliest hour with a non-zero count across several series (when data starts)."""
    hours = [h for s in series for h, v in s.items() if v > 0]
    return min(hours) if hours else None


def total(series: Mapping[datetime, float], hours: Iterable[datetime]) -> float:
    return float(sum(series.get(h, 0) for h in hours))


def total_reaches(series: Mapping[datetime, float], minimum: float) -> Callable[[list[datetime]], bool]:
    """A stop rule for ``pool_until``: the pooled hours hold at least ``minimum`` in ``series``."""
    return lambda hours: total(series, hours) >= minimum


def history_hours(inputs: AuditInputs, days: int, known_from: datetime | None = None) -> list[datetime]:
    """Hours of the ``days`` days before the window (not before the data start)."""
    start = inputs.window_start - days * 24 * HOUR
    start = max(start, inputs.history_start, known_from or inputs.history_start)
    return hours_between(start, inputs.window_start)


def merge_same_problem(findings: list[Finding]) -> list[Finding]:
    """One finding per id: the same code on the same event (e.g. both sources) becomes one finding
    carrying the worse severity, both sets of evidence, and ``source="both"`` where sources differ."""
    merged: dict[str, Finding] = {}
    for finding in findings:
        kept = merged.get(finding.id)
        if kept is None:
            merged[finding.id] = finding
            continue
        first, second = sorted((kept, finding), key=lambda f: -SEVERITY_RANK[f.severity])
        metrics, summary = dict(first.metrics), first.summary
        source = metrics.get("source")
        if isinstance(source, str) and source != second.metrics.get("source"):
            summary = summary.replace(source, f"{source} and {second.metrics.get('source')}", 1)
            metrics["source"] = "both"
        merged[finding.id] = first.model_copy(
            update={"metrics": metrics, "summary": summary, "evidence": [*first.evidence, *second.evidence]}
        )
    return list(merged.values())


def week_earlier(inputs: AuditInputs) -> QualitySnapshot | None:
    """The dataset-quality snapshot closest to a week before the current one (at least a day older)."""
    if inputs.quality is None:
        return None
    now = inputs.quality.fetched_at
    older = [s for s in inputs.quality_history if now - s.fetched_at >= DAY]
    if not older:
        return None
    return min(older, key=lambda s: abs((now - s.fetched_at) - 7 * DAY))


def pool_until(inputs: AuditInputs, enough: Callable[[list[datetime]], bool]) -> list[datetime]:
    """Audited hours, plus earlier ones until ``enough(hours)`` or the pooling limit."""
    for count in range(1, MAX_POOLED_HOURS + 1):
        hours = pooled_hours(inputs, count)
        if enough(hours) or len(hours) < count:
            return hours
    return pooled_hours(inputs, MAX_POOLED_HOURS)
