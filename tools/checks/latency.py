"""Latency check: how long events take from event_time to Meta, and whether their time is sane.

- ``latency.p95_high``: p95 of the event_time -> delivery lag (from the per-hour histogram,
  interpolated inside the bucket) above ``latency_p95_seconds``.
- ``latency.too_old``: events older than 7 days when sent (Meta rejects the whole request).
- ``latency.future_time``: events dated in the future (a clock or time-zone bug).
- ``latency.freshness_degraded``: Meta's data freshness is no longer real time while it used to be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from tools.checks.series import (
    MIN_SHARE_EVENTS,
    ledger_by_event,
    pool_until,
    span_label,
    week_earlier,
    window_hours,
)
from tools.checks.types import LAG_BUCKET_EDGES, AuditInputs, EventHour, Finding, make_finding

# A couple of events with a skewed device clock are normal; a server bug dates many.
MIN_FUTURE_EVENTS = 3


def lag_percentile(buckets: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a lag histogram in seconds, linear inside its bucket.

    The open last bucket (older than the last edge) reports the last edge: a lower bound.
    """
    n = sum(buckets)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    lower = 0.0
    for index, count in enumerate(buckets):
        upper = float(LAG_BUCKET_EDGES[index]) if index < len(LAG_BUCKET_EDGES) else lower
        if count and seen + count >= rank:
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower


def _merged_buckets(rows: Sequence[EventHour]) -> list[int]:
    merged = [0] * (len(LAG_BUCKET_EDGES) + 1)
    for row in rows:
        for index, count in enumerate(row.lag_buckets):
            merged[index] += count
    return merged


def _attempted(rows: Mapping[datetime, EventHour], hours: list[datetime]) -> int:
    return sum(sum(rows[h].lag_buckets) for h in hours if h in rows)


def _human(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_lag(inputs: AuditInputs) -> list[Finding]:
    """latency.p95_high, latency.too_old and latency.future_time per event."""
    t = inputs.thresholds
    out: list[Finding] = []
    for name, rows in sorted(ledger_by_event(inputs).items()):
        hours = pool_until(inputs, lambda hs, rows=rows: _attempted(rows, hs) >= MIN_SHARE_EVENTS)
        now = [rows[h] for h in hours if h in rows]
        buckets = _merged_buckets(now)
        attempted = sum(buckets)
        p95 = lag_percentile(buckets, 0.95)
        if p95 is not None and attempted >= t.min_baseline_events and p95 > t.latency_p95_seconds:
            out.append(make_finding(
                inputs, check="latency", code="latency.p95_high", event_name=name,
                severity="critical" if p95 >= 24 * 3600 else "warning",
                summary=f"{name} events reach Meta late: 95% arrive within {_human(p95)} "
                        f"(limit {_human(t.latency_p95_seconds)}).",
                metrics={"observed": round(p95), "threshold": t.latency_p95_seconds,
                         "baseline": None, "p50": round(lag_percentile(buckets, 0.5) or 0),
                         "events": attempted},
                evidence=[f"{span_label(hours)}: lag histogram of {attempted} {name} events "
                          f"(upper edges s {list(LAG_BUCKET_EDGES)} + older): {buckets}"],
            ))
        window = [rows[h] for h in window_hours(inputs) if h in rows]
        n = sum(r.events for r in window)
        too_old = sum(r.too_old for r in window)
        if too_old:
            out.append(make_finding(
                inputs, check="latency", code="latency.too_old", event_name=name,
                severity="critical" if too_old / max(n, 1) >= 0.5 else "warning",
                summary=f"{too_old} {name} events were older than 7 days when sent; Meta rejects "
                        "the whole request for them.",
                metrics={"observed": too_old, "events": n, "threshold": 0, "baseline": 0},
                evidence=[f"{span_label(window_hours(inputs))}: {too_old} of {n} {name} events older "
                          "than 7 days"],
            ))
        future = sum(r.future_time for r in window)
        if n and future >= MIN_FUTURE_EVENTS and future / n > t.hash_bad_share:
            out.append(make_finding(
                inputs, check="latency", code="latency.future_time", event_name=name, severity="warning",
                summary=f"{future / n:.0%} of {name} events are dated in the future: a clock or "
                        "time-zone bug on the server.",
                metrics={"observed": round(future / n, 3), "future_events": future, "events": n,
                         "threshold": t.hash_bad_share, "baseline": 0},
                evidence=[f"{span_label(window_hours(inputs))}: {future} of {n} {name} events have "
                          "event_time more than 5 minutes ahead of their arrival"],
            ))
    return out


def check_freshness(inputs: AuditInputs) -> list[Finding]:
    """latency.freshness_degraded from the dataset-quality data_freshness field."""
    before = week_earlier(inputs)
    if inputs.quality is None:
        return []
    then = {q.event_name: q.upload_frequency for q in before.events} if before else {}
    earlier = {q.event_name for s in inputs.quality_history for q in s.events
               if q.upload_frequency == "real_time"}
    out: list[Finding] = []
    for quality in inputs.quality.events:
        name, now = quality.event_name, quality.upload_frequency
        if now is None or now == "real_time":
            continue
        if then.get(name) != "real_time" and name not in earlier:
            continue  # never real time: a standing set-up, not a regression
        out.append(make_finding(
            inputs, check="latency", code="latency.freshness_degraded", event_name=name, severity="warning",
            summary=f"Meta now sees {name} data arrive '{now}' instead of in real time.",
            metrics={"observed": now, "baseline": "real_time", "threshold": "real_time"},
            evidence=[f"Dataset Quality API data_freshness for {name}: {now} "
                      f"(real_time in earlier snapshots)"],
        ))
    return out


def check_latency(inputs: AuditInputs) -> list[Finding]:
    """All latency findings for the audited window."""
    return [*check_lag(inputs), *check_freshness(inputs)]
