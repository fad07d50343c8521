"""Latency check: how long events take from event_time to Meta, and whether their time is sane.

- ``latency.p95_high``: p95 of the event_time -> delivery lag (from the per-hour histogram,
  interpolated inside the bucket) above ``latency_p95_seconds``.
- ``latency.too_old``: events older than 7 days when sent (Meta rejects the whole request).
- ``latency.future_time``: events dated in the future (a clock or time-zone bug).
- ``latency.freshness_degraded``: Meta's data freshness is no longer real time while it used to be.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from tools.checks.series import (
    MIN_SHARE_EVENTS,
    ledger_by_event,
    pool_until,
    span_label,
    week_earlier,
    window_hours,
)
from tools.checks.stats import binomial_tail
from tools.checks.types import LAG_BUCKET_EDGES, OFFSET_EDGES, AuditInputs, EventHour, Finding, make_finding
from tools.timeutil import HOUR

# Lag is news when its p95 is above the limit and above this multiple of the sender's usual p95,
# with at least MIN_LATE_EVENTS and LATE_SHARE of the events clearly past it.
LAG_GROWTH = 2.0
MIN_LATE_EVENTS = 5
LATE_SHARE = 0.2
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


def _attempts_reach(rows: Mapping[datetime, EventHour], minimum: int) -> Callable[[list[datetime]], bool]:
    """A stop rule for ``pool_until``: the pooled hours hold at least ``minimum`` send attempts."""
    return lambda hours: _attempted(rows, hours) >= minimum


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
        hours = pool_until(inputs, _attempts_reach(rows, MIN_SHARE_EVENTS))
        now = [rows[h] for h in hours if h in rows]
        buckets = _merged_buckets(now)
        attempted = sum(buckets)
        p95 = lag_percentile(buckets, 0.95)
        # The sender's own usual lag (the 7 days before): a batch job that flushes hourly at :17 has a
        # p95 above an hour every day; that is its schedule, not news. Late means late for it too.
        usual_rows = [r for h, r in rows.items() if hours[0] - 7 * 24 * HOUR <= h < hours[0]]
        usual = lag_percentile(_merged_buckets(usual_rows), 0.95)
        limit = max(t.latency_p95_seconds, LAG_GROWTH * usual) if usual is not None else t.latency_p95_seconds
        if p95 is not None and attempted >= t.min_baseline_events and t.latency_p95_seconds < p95 <= limit:
            out.append(make_finding(
                inputs, check="latency", code="latency.standing_lag", event_name=name, severity="info",
                summary=f"{name} events usually reach Meta within {_human(usual or p95)} (95%): the "
                        "sender's schedule, unchanged.",
                metrics={"observed": round(p95), "baseline": round(usual or 0), "threshold": round(limit)},
                evidence=[f"{span_label(hours)}: p95 lag {_human(p95)}; previous 7 days {_human(usual or 0)}"],
            ))
        # The histogram's buckets are coarse (1 h to 3 h is one bucket): a p95 interpolated inside the
        # bucket that holds the limit is noise on a few events. Late events must sit in buckets wholly
        # above the limit, and be a fifth of the hour's events (p95 above the limit by a clear margin).
        lower_edges = (0, *LAG_BUCKET_EDGES)
        late = sum(c for edge, c in zip(lower_edges, buckets, strict=True) if edge >= limit)
        if (p95 is not None and attempted >= t.min_baseline_events and p95 > limit
                and late >= max(MIN_LATE_EVENTS, LATE_SHARE * attempted)):
            out.append(make_finding(
                inputs, check="latency", code="latency.p95_high", event_name=name,
                severity="critical" if p95 >= 24 * 3600 else "warning",
                summary=f"{name} events reach Meta late: 95% arrive within {_human(p95)} "
                        f"(limit {_human(t.latency_p95_seconds)}).",
                metrics={"observed": round(p95), "threshold": round(limit),
                         "baseline": round(usual) if usual is not None else None,
                         "p50": round(lag_percentile(buckets, 0.5) or 0), "events": attempted},
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


# The usual arrival offsets: buckets that held at least this share of the last week's arrivals.
USUAL_BUCKET_SHARE = 0.05
# An hour's arrivals are "moved" when most of them (more than MOVED_SHARE) fall outside the usual
# buckets and chance cannot explain it: the binomial tail of so many moved arrivals at the sender's own
# usual share outside (at least USUAL_OUTSIDE_FLOOR) is below MOVED_TAIL, with at least
# MIN_THIN_ARRIVALS of them. A majority, not all: a clock that jumps at :10 leaves the hour's first
# minutes on time, and the jump must show in that hour (at 4 events an hour too); a few stragglers
# (a retried batch) are a minority and stay the lag checks' business. A sender whose usual share
# outside is above USUAL_OUTSIDE_MAX has no usual offset to compare with.
MOVED_SHARE = 0.5
USUAL_OUTSIDE_MAX = 0.1
MOVED_TAIL = 1e-6
MIN_THIN_ARRIVALS = 4
USUAL_OUTSIDE_FLOOR = 0.01


# Moved arrivals within two adjacent buckets are one constant offset (a clock); wider is a spread.
CONSTANT_SHARE = 0.8


def _offset_label(index: int) -> str:
    edges = OFFSET_EDGES
    low = edges[index - 1] if index > 0 else None
    high = edges[index] if index < len(edges) else None

    def fmt(seconds: int) -> str:
        return _human(abs(seconds))
    if low is None:
        return f"more than {fmt(high or 0)} ahead"
    if high is None:
        return f"more than {fmt(low)} behind"
    if high <= 0:
        return f"{fmt(high)} to {fmt(low)} ahead"
    return f"{fmt(max(low, 0))} to {fmt(high)} behind"


def check_arrivals(inputs: AuditInputs) -> list[Finding]:
    """latency.clock_offset / latency.backlog_arrivals from the hour's arrivals (received_at).

    Arrival time is what a clock bug cannot move: a server clock three hours behind (or a wrong time
    zone) stamps every event with the same offset from its first hour, while a backlog being drained
    delivers events late by a spread of amounts. Both are judged against the pixel's usual offsets."""
    window = set(window_hours(inputs))
    size = len(OFFSET_EDGES) + 1
    now, usual = [0] * size, [0] * size
    since = inputs.window_start - 7 * 24 * HOUR
    for row in inputs.arrival_hours:
        target = now if row.hour in window else usual if row.hour >= since else None
        if target is None:
            continue
        for i, count in enumerate(row.offsets[:size]):
            target[i] += count
    n, n_usual = sum(now), sum(usual)
    if n < MIN_THIN_ARRIVALS:
        return []
    zero = bisect_left(OFFSET_EDGES, 0)
    normal = ({i for i, c in enumerate(usual) if c >= USUAL_BUCKET_SHARE * n_usual} if n_usual
              else {zero, zero + 1})
    outside = sum(c for i, c in enumerate(usual) if i not in normal)
    if n_usual and outside > USUAL_OUTSIDE_MAX * n_usual:
        return []  # this sender's offsets are all over the place normally: nothing to compare with
    moved = {i: c for i, c in enumerate(now) if i not in normal and c}
    moved_n = sum(moved.values())
    if moved_n <= MOVED_SHARE * n:
        return []
    usual_outside = max(USUAL_OUTSIDE_FLOOR, outside / n_usual) if n_usual else USUAL_OUTSIDE_MAX
    if binomial_tail(moved_n, n, usual_outside) >= MOVED_TAIL:
        return []
    pair = max(range(size - 1), key=lambda i: now[i] + now[i + 1] if {i, i + 1} & set(moved) else -1)
    constant = (now[pair] + now[pair + 1]) >= CONSTANT_SHARE * moved_n
    main = max(moved, key=lambda i: moved[i])
    label = span_label(window_hours(inputs))
    histogram = [f"{_offset_label(i)}: {c}" for i, c in sorted(moved.items())]
    if constant:
        ahead = main < zero
        return [make_finding(
            inputs, check="latency", code="latency.clock_offset", severity="critical",
            summary=f"{moved_n} of {n} server events that arrived in {label} carry an event_time "
                    f"{_offset_label(main)} of their arrival: a server clock or time-zone error "
                    "(events land in the wrong hours at Meta).",
            metrics={"observed": round(moved_n / n, 3), "threshold": MOVED_SHARE, "baseline": None,
                     "direction": "ahead" if ahead else "behind", "offset": _offset_label(main),
                     "arrivals": n},
            evidence=[f"{label}: arrivals by received_at - event_time: " + ", ".join(histogram),
                      f"previous 7 days: {n_usual} arrivals, {USUAL_OUTSIDE_MAX:.0%} or fewer outside the "
                      "usual offsets"],
        )]
    return [make_finding(
        inputs, check="latency", code="latency.backlog_arrivals", severity="warning",
        summary=f"{moved_n} of {n} server events that arrived in {label} were late by a spread of amounts: "
                "a queue draining a backlog.",
        metrics={"observed": round(moved_n / n, 3), "threshold": MOVED_SHARE, "baseline": None, "arrivals": n},
        evidence=[f"{label}: arrivals by received_at - event_time: " + ", ".join(histogram)],
    )]


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
    """All latency findings for the audited window.

    Meta's freshness label is second-hand: the ledger sees every arrival first. When the ledger's own
    lag and arrivals show nothing late, a label that changed (it does with volume alone, e.g. a site
    outage or a quiet night) is reported as info, not as a warning that would raise an incident.
    """
    own = [*check_lag(inputs), *check_arrivals(inputs)]
    fresh = check_freshness(inputs)
    if not any(f.severity != "info" for f in own):
        fresh = [f.model_copy(update={"severity": "info"}) for f in fresh]
    return [*own, *fresh]
