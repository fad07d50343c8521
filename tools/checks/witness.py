"""Demand vs tracking: every series is judged by its witnesses, never by its volume alone.

A series (event name x channel) has witnesses that see the same demand through another path:

- ``cross``: the same event on the other channel (server Purchase vs browser Purchase, Meta's stats).
  Precise about the ratio, so it catches partial losses: margin 0.9 (a 10 % fall must be shown).
- ``pool``: the same event on the other channel plus every other event of the same channel. Much more
  volume, so a total loss of a low-volume event (Purchase at 2 an hour, Lead at 0.3) shows within
  hours; the mix of events moves with conversion rates, so its margin is 0.7 (a 30 % fall).

Why these margins: the margin is the smallest fall the test can be sure of, so it sets how long a
partial loss takes (a 58 % loss judged at 0.8 needs about 1.5 times the hours it needs at 0.9). It
must stay above what moves a share with nothing broken: the ad-block share drifting over the 4-week
reference, conversion rates moving the pool's mix. Measured on the eval library's 37 healthy shops
(real demand curves, drifting ad-block shares; one audit each, every onset of 7 days): the largest
evidence was 0.8 nats for ``cross`` at 0.9 and 3.2 for ``pool`` at 0.7, against the alarm at 7; at a
margin of 1.0 a drifting shop reached 11 (``cross``) and 22 (``total``) nats. So 0.9 keeps a drift of a
few percent out, and 0.95 would leave too little room for drifts larger than the generator's.
- ``total``: all server events vs all browser events, for a pixel-wide loss on a small shop.

When every channel falls together (storm, holiday, site outage) shares hold and nothing fires; the
volume check reports the demand change as info. Each test is ``evidence.share_shift`` (a change-point
GLR with the reference taken before the onset and open incidents' hours kept out). A series whose
witnesses could not show even a total loss over the whole look-back is ``not judged`` and says why.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

from tools.checks.evidence import ALARM_LLR, ShareShift, share_shift
from tools.checks.series import ledger_counts, meta_counts
from tools.checks.types import LAG_BUCKET_EDGES, AuditInputs, NotJudged, Severity, Source
from tools.timeutil import HOUR, hours_between

CROSS_MARGIN = 0.9
POOL_MARGIN = 0.7
# Candidate onsets reach back over Meta's replay window: a failure that began days before the first
# audit is still found and dated.
LOOKBACK_HOURS = 7 * 24
# An hour is judged once the sender's usual lag says this share of its events has arrived.
SETTLED_SHARE = 0.9
ALL_EVENTS = "*"
# Causes that change the counts of a series: while one is open, its hours serve as no reference.
# (Data-quality incidents such as hashing or match keys leave volumes alone.)
COUNT_CAUSES = frozenset({"server_events_down", "browser_pixel_down", "access_token_invalid", "missed_batch",
                          "late_delivery", "rate_limited", "malformed_parameter", "event_renamed",
                          "duplicate_events", "clock_skew", "undetermined"})


@dataclass(frozen=True)
class WitnessVerdict:
    """One test of one series against one witness."""

    event_name: str  # ALL_EVENTS for the pixel total
    source: Source
    witness: str  # cross | pool | total | orders
    origin: str  # meta | ledger
    shift: ShareShift
    hours: tuple[datetime, ...]  # the hour of each array index

    @property
    def alarm(self) -> bool:
        return self.shift.alarm

    @property
    def expected(self) -> float:
        """Target events expected since the onset at the reference level. A witness (the other
        channel, the pool) saw the same demand: the usual ratio times what it saw. The orders'
        partner is their unmatched part, which grows with the failure: the usual matched share of
        all the orders."""
        shift = self.shift
        if self.witness == "orders":
            usual = shift.reference_ratio / (1 + shift.reference_ratio)
            return usual * (shift.target_after + shift.partner_after)
        return shift.expected_after

    @property
    def ratio(self) -> float:
        """What arrived as a share of what was expected (1.0: at the reference level)."""
        expected = self.expected
        return self.shift.target_after / expected if expected > 0 else 1.0

    @property
    def judged(self) -> bool:
        return self.shift.power >= ALARM_LLR

    @property
    def onset(self) -> datetime:
        return self.hours[self.shift.onset]


@dataclass(frozen=True)
class WitnessReport:
    verdicts: tuple[WitnessVerdict, ...]
    not_judged: tuple[NotJudged, ...]
    settled_until: datetime  # hours from here on were not judged yet (sender still flushing)

    def for_series(self, event_name: str, source: Source) -> list[WitnessVerdict]:
        return [v for v in self.verdicts if v.event_name == event_name and v.source == source]

    def judged(self, event_name: str, source: Source) -> bool:
        return any(v.judged for v in self.for_series(event_name, source))


_CACHE: dict[int, tuple[weakref.ref[AuditInputs], WitnessReport]] = {}


def witness_report(inputs: AuditInputs) -> WitnessReport:
    """The witness tests of one audit (computed once per AuditInputs object)."""
    cached = _CACHE.get(id(inputs))
    if cached is not None and cached[0]() is inputs:
        return cached[1]
    report = _compute(inputs)
    _CACHE.clear()  # one audit at a time per process is the common case; keep memory flat
    _CACHE[id(inputs)] = (weakref.ref(inputs), report)
    return report


def lag_histogram(inputs: AuditInputs) -> list[int]:
    """Server events by event_time -> delivery lag bucket, over the 7 days before the window."""
    since = inputs.window_start - 7 * 24 * HOUR
    buckets = [0] * (len(LAG_BUCKET_EDGES) + 1)
    for row in inputs.event_hours:
        if row.hour >= since and row.lag_buckets:
            for i, count in enumerate(row.lag_buckets):
                buckets[i] += count
    return buckets


def lag_cdf(buckets: list[int], seconds: float) -> float:
    """Share of events delivered within ``seconds`` of their event_time (linear inside a bucket)."""
    total = sum(buckets)
    if not total:
        return 1.0
    below, lower = 0.0, 0.0
    for i, edge in enumerate(LAG_BUCKET_EDGES):
        if seconds >= edge:
            below += buckets[i]
            lower = edge
            continue
        return (below + buckets[i] * max(0.0, seconds - lower) / (edge - lower)) / total
    return below / total


_SETTLED: dict[int, tuple[weakref.ref[AuditInputs], datetime]] = {}


def settled_until(inputs: AuditInputs) -> datetime:
    """The end of the last hour whose server events have (by the sender's usual lag) mostly arrived.

    A sender that flushes once an hour at :37 has sent only part of the last hour when the audit runs
    at :10; judging that hour now would look like a loss, so it is judged by the next audit.
    (Computed once per AuditInputs object: several checks ask, and it reads a week of rollups.)"""
    cached = _SETTLED.get(id(inputs))
    if cached is not None and cached[0]() is inputs:
        return cached[1]
    until = _settled_until(inputs)
    _SETTLED.clear()
    _SETTLED[id(inputs)] = (weakref.ref(inputs), until)
    return until


def _settled_until(inputs: AuditInputs) -> datetime:
    at = inputs.audited_at or inputs.window_end
    buckets = lag_histogram(inputs)
    end = inputs.window_end
    while end > inputs.window_start - 24 * HOUR:
        hour = end - HOUR
        # Events are spread over the hour: average the arrival share at six points of it.
        share = sum(lag_cdf(buckets, (at - hour - timedelta(minutes=10 * k + 5)).total_seconds())
                    for k in range(6)) / 6
        if share >= SETTLED_SHARE:
            return end
        end = hour
    return end


def _excluded(inputs: AuditInputs, hours: list[datetime]) -> dict[str, set[int]]:
    """Event name (or ALL_EVENTS) -> indices of hours inside an open incident touching it."""
    index = {h: i for i, h in enumerate(hours)}
    out: dict[str, set[int]] = {}
    for span in inputs.incident_spans:
        if span.root_cause not in COUNT_CAUSES:
            continue
        start = max(span.since, hours[0]) if hours else span.since
        idx = {index[h] for h in hours_between(start, hours[-1] + HOUR) if h in index} if hours else set()
        for name in span.event_names or (ALL_EVENTS,):
            out.setdefault(name, set()).update(idx)
    return out


def _first_nonzero(values: list[float]) -> int | None:
    return next((i for i, v in enumerate(values) if v > 0), None)


def _compute(inputs: AuditInputs) -> WitnessReport:
    until = settled_until(inputs)
    hours = hours_between(inputs.history_start, until)
    if not hours:
        return WitnessReport((), (), until)
    position = {h: i for i, h in enumerate(hours)}
    if inputs.meta_counts is not None:
        origin, raw = "meta", meta_counts(inputs)
    else:
        origin, raw = "ledger", {(name, "server"): s for name, s in ledger_counts(inputs).items()}
    series: dict[tuple[str, Source], list[float]] = {}
    for key, by_hour in raw.items():
        values = [0.0] * len(hours)
        for hour, count in by_hour.items():
            i = position.get(hour)
            if i is not None:
                values[i] += count
        series[key] = values
    excluded = _excluded(inputs, hours)
    pixel_wide = excluded.get(ALL_EVENTS, set())
    sources: dict[Source, list[float]] = {}
    for (_, source), values in series.items():
        acc = sources.setdefault(source, [0.0] * len(hours))
        for i, v in enumerate(values):
            acc[i] += v
    starts = {source: _first_nonzero(values) for source, values in sources.items()}
    verdicts: list[WitnessVerdict] = []
    not_judged: list[NotJudged] = []
    hours_t = tuple(hours)

    def run(name: str, source: Source, witness: str, target: list[float], partner: list[float],
            margin: float, known_from: int) -> WitnessVerdict | None:
        skip = pixel_wide | excluded.get(name, set())
        usable = [i not in skip for i in range(len(hours))]
        shift = share_shift(target, partner, usable, lookback=LOOKBACK_HOURS, margin=margin,
                            known_from=known_from)
        if shift is None:
            return None
        verdict = WitnessVerdict(name, source, witness, origin, shift, hours_t)
        verdicts.append(verdict)
        return verdict

    for (name, source), target in sorted(series.items()):
        start = starts.get(source)
        if start is None or sum(target) == 0:
            continue
        other: Source = "browser" if source == "server" else "server"
        cross = series.get((name, other))
        other_start = starts.get(other)
        found: list[WitnessVerdict | None] = []
        if cross is not None and other_start is not None and sum(cross) > 0:
            found.append(run(name, source, "cross", target, cross, CROSS_MARGIN, max(start, other_start)))
        # The rest of the channel, plus the same event on the other channel.
        channel = sources[source]
        pool = [c - t + (x if cross is not None else 0.0)
                for c, t, x in zip(channel, target, cross or channel, strict=True)]
        if sum(pool) > 0:
            found.append(run(name, source, "pool", target, pool, POOL_MARGIN, start))
        if not any(v is not None and v.judged for v in found):
            reason = ("too few events: even a total loss over the last 7 days would not be clear"
                      if any(v is not None for v in found) else
                      "no witness with enough history (no other channel or event to compare with)")
            not_judged.append(NotJudged(event_name=name, source=source, reason=reason))
    if "server" in sources and "browser" in sources and starts["server"] is not None \
            and starts["browser"] is not None:
        known = max(starts["server"], starts["browser"])
        run(ALL_EVENTS, "server", "total", sources["server"], sources["browser"], CROSS_MARGIN, known)
        run(ALL_EVENTS, "browser", "total", sources["browser"], sources["server"], CROSS_MARGIN, known)
    return WitnessReport(tuple(verdicts), tuple(not_judged), until)


def orders_verdict(inputs: AuditInputs) -> WitnessVerdict | None:
    """The shop's orders as the witness of its server Purchases: the share of orders that a server
    Purchase matched, tested like any other share (reference before the onset, the cross margin)."""
    if not inputs.has_orders or not inputs.order_hours:
        return None
    until = witness_report(inputs).settled_until
    hours = hours_between(inputs.history_start, until)
    if not hours:
        return None
    position = {h: i for i, h in enumerate(hours)}
    matched, unmatched = [0.0] * len(hours), [0.0] * len(hours)
    for row in inputs.order_hours:
        i = position.get(row.hour)
        if i is not None:
            matched[i] += row.matched
            unmatched[i] += max(0, row.orders - row.matched)
    start = _first_nonzero([m + u for m, u in zip(matched, unmatched, strict=True)])
    if start is None:
        return None
    excluded = _excluded(inputs, hours)
    skip = excluded.get(ALL_EVENTS, set()) | excluded.get("Purchase", set())
    shift = share_shift(matched, unmatched, [i not in skip for i in range(len(hours))],
                        lookback=LOOKBACK_HOURS, margin=CROSS_MARGIN, known_from=start)
    return WitnessVerdict("Purchase", "server", "orders", "ledger", shift, tuple(hours)) if shift else None


def drop_severity(verdict: WitnessVerdict) -> Severity:
    """Critical when the series is nearly gone (below a fifth of its usual share)."""
    return "critical" if verdict.ratio < 0.2 else "warning"


def describe(verdict: WitnessVerdict) -> str:
    shift = verdict.shift
    hours = len(verdict.hours) - shift.onset
    seen = (f"{shift.target_after:.0f} of {shift.target_after + shift.partner_after:.0f} orders"
            if verdict.witness == "orders" else f"{shift.target_after:.0f} received")
    return (f"since {verdict.onset:%Y-%m-%d %H:00} UTC ({hours} h): {seen}, "
            f"about {verdict.expected:.0f} expected from its witnesses "
            f"({verdict.ratio:.0%} of the usual share; evidence {shift.llr:.1f} nats, "
            f"{math.exp(min(shift.llr, 50)):.0f}:1)")
