"""Parity check: do the browser side, the server side and the shop's orders tell the same story?

- Browser vs server (Meta stats) per event and for the whole pixel, as a change in one channel's
  share against the other (``tools.checks.witness``): demand moves both and is not a finding.
- Ledger Purchases vs the shop's orders (``parity.orders_unmatched``).
- event_id coverage of server events (ledger) and Meta's dedupe-key feedback
  (``parity.dedup_key_missing``). Repeated event ids and double-counted orders are the
  ``duplicates`` check's (``tools.checks.duplicates``).
"""

from __future__ import annotations

from datetime import datetime

from tools.checks.evidence import ShareShift, share_shift
from tools.checks.series import (
    MIN_SHARE_EVENTS,
    history_hours,
    ledger_by_event,
    merge_same_problem,
    meta_counts,
    pool_until,
    span_label,
    total_reaches,
    week_earlier,
)
from tools.checks.types import AuditInputs, EventHour, Finding, QualitySnapshot, Severity, Source, make_finding
from tools.checks.witness import (
    ALL_EVENTS,
    CROSS_MARGIN,
    LOOKBACK_HOURS,
    WitnessVerdict,
    describe,
    drop_severity,
    orders_verdict,
    settled_until,
    witness_report,
)
from tools.timeutil import DAY, HOUR, hours_between, to_iso

# Both sides need this many events over the last week before their ratio is trusted.
MIN_RATIO_HISTORY = 50
# Points the browser's eventID share may fall within a day before it is news. Meta does not say over
# how long its share is taken (two days moves it about 2 points an hour on a total loss, seven days
# about 0.6), so the fall needed is what chance cannot do: BROWSER_ID_SD standard deviations of the
# share's movement (binomial, from the browser events between the snapshots over those of the last
# 48 hours, the shorter window and so the noisier), at least BROWSER_ID_FALL_MIN points and at most
# BROWSER_ID_FALL.
BROWSER_ID_FALL = 5.0
BROWSER_ID_FALL_MIN = 2.0
BROWSER_ID_SD = 4.0
# Meta's dedupe-key coverage may fall this many points before it is news.
DEDUPE_FEEDBACK_DROP_PCT = 25.0


def witness_metrics(v: WitnessVerdict, threshold: float) -> dict[str, float | int | str | None]:
    """Metrics every witness-based finding carries (rates per hour let the rename rule compare)."""
    shift = v.shift
    hours = max(1, len(v.hours) - shift.onset)
    return {
        "source": v.source, "origin": v.origin, "witness": v.witness,
        "observed": int(shift.target_after), "baseline": round(v.expected, 1),
        "threshold": threshold, "ratio_of_baseline": round(v.ratio, 3),
        "expected_per_hour": round(v.expected / hours, 3),
        "observed_per_hour": round(shift.target_after / hours, 3),
        "onset": to_iso(v.onset), "hours": hours, "evidence_llr": round(shift.llr, 1),
    }


def check_browser_server(inputs: AuditInputs) -> list[Finding]:
    """parity.server_below_browser / parity.browser_below_server: a channel's share of the same event
    (or of the whole pixel) fell against the other channel, judged by ``witness``."""
    report = witness_report(inputs)
    out: list[Finding] = []
    alarmed: set[Source] = set()
    for v in report.verdicts:
        if not v.alarm or v.witness != "cross":
            continue
        alarmed.add(v.source)
        out.append(_parity_finding(inputs, v))
    for v in report.verdicts:
        if v.alarm and v.witness == "total" and v.source not in alarmed:
            out.append(_parity_finding(inputs, v))
    return out


def _parity_finding(inputs: AuditInputs, v: WitnessVerdict) -> Finding:
    other = "browser" if v.source == "server" else "server"
    name = None if v.event_name == ALL_EVENTS else v.event_name
    what = f"{name} events" if name else "events (all names)"
    return make_finding(
        inputs, check="parity", code=f"parity.{v.source}_below_{other}", event_name=name,
        severity=drop_severity(v),
        summary=f"Meta received fewer {what} from the {v.source} than the {other} side shows: "
                f"{v.ratio:.0%} of the usual proportion since {v.onset:%a %H:00} UTC.",
        metrics=witness_metrics(v, CROSS_MARGIN),
        evidence=[f"{v.event_name if name else 'all events'} {v.source} vs {other} (Meta stats) "
                  + describe(v)],
    )


def check_orders(inputs: AuditInputs) -> list[Finding]:
    """parity.orders_unmatched: the share of the shop's orders matched by a server Purchase fell
    (``witness.orders_verdict``); a shop that always matched 70 % is not newly broken at 70 %."""
    v = orders_verdict(inputs)
    if v is None or not v.alarm:
        return []
    shift = v.shift
    orders = shift.target_after + shift.partner_after
    share = shift.target_after / orders if orders else 0.0
    usual = shift.reference_ratio / (1 + shift.reference_ratio)
    return [make_finding(
        inputs, check="parity", code="parity.orders_unmatched", event_name="Purchase",
        severity="critical" if share < 0.3 else "warning",
        summary=f"Only {shift.target_after:.0f} of {orders:.0f} shop orders since {v.onset:%a %H:00} UTC reached "
                f"Meta as a server Purchase ({share:.0%}, usually {usual:.0%}).",
        # Rates in Purchases per hour (what the rename rule compares with a new name's rate).
        metrics={**witness_metrics(v, CROSS_MARGIN), "observed": round(share, 3), "baseline": round(usual, 3),
                 "orders": int(orders), "matched": int(shift.target_after)},
        evidence=[f"orders matched by a server Purchase {describe(v)}"],
    )]


def _dedupe_feedback(inputs: AuditInputs) -> dict[str, tuple[float, float]]:
    """Event -> (server % with event_id a week ago, now) where Meta's feedback fell sharply."""
    before = week_earlier(inputs)
    if inputs.quality is None or before is None:
        return {}

    def server_pct(snapshot: QualitySnapshot) -> dict[str, float]:
        return {
            q.event_name: fb.server_pct
            for q in snapshot.events for fb in q.dedupe_key_feedback
            if fb.dedupe_key == "event_id" and fb.server_pct is not None
        }

    now, then = server_pct(inputs.quality), server_pct(before)
    return {
        name: (then[name], pct) for name, pct in now.items()
        if name in then and then[name] - pct >= DEDUPE_FEEDBACK_DROP_PCT
    }


# event_id coverage must fall below this share of its level before the change (relative) to count.
EVENT_ID_MARGIN = 0.75


def _event_id_shift(inputs: AuditInputs, rows: dict[datetime, EventHour]) -> tuple[ShareShift, datetime] | None:
    """A change point in the share of server events carrying an event_id over Meta's 7 days, its
    reference taken before the change: a loss that began days ago (before the first audit, or absorbed
    by a 7-day average) is still a loss."""
    hours = hours_between(inputs.history_start, settled_until(inputs))
    if not hours:
        return None
    carried = [float(rows[h].with_event_id) if h in rows else 0.0 for h in hours]
    missing = [float(rows[h].events - rows[h].with_event_id) if h in rows else 0.0 for h in hours]
    start = next((i for i, h in enumerate(hours) if h in rows and rows[h].events), None)
    if start is None:
        return None
    shift = share_shift(carried, missing, [True] * len(hours), lookback=LOOKBACK_HOURS,
                        margin=EVENT_ID_MARGIN, known_from=start)
    return (shift, hours[shift.onset]) if shift is not None and shift.alarm else None


def check_event_ids(inputs: AuditInputs) -> list[Finding]:
    """parity.dedup_key_missing from the ledger and Meta's feedback."""
    t = inputs.thresholds
    out: list[Finding] = []
    feedback = _dedupe_feedback(inputs)
    for name, rows in sorted(ledger_by_event(inputs).items()):
        events = {h: float(r.events) for h, r in rows.items()}
        hours = pool_until(inputs, total_reaches(events, MIN_SHARE_EVENTS))
        now: list[EventHour] = [rows[h] for h in hours if h in rows]
        n = sum(r.events for r in now)
        past: list[EventHour] = [rows[h] for h in history_hours(inputs, 7) if h in rows]
        past_n = sum(r.events for r in past)
        evidence: list[str] = []
        coverage = sum(r.with_event_id for r in now) / n if n else None
        usual = sum(r.with_event_id for r in past) / past_n if past_n else None
        severity: Severity | None = None
        if n >= t.min_baseline_events and coverage is not None and coverage < t.event_id_min_coverage:
            evidence.append(
                f"{span_label(hours)}: {coverage:.0%} of {n} server {name} events carry an event_id"
            )
            if usual is not None:
                evidence.append(f"previous 7 days: {usual:.0%} of {past_n}")
            if usual is not None and usual < t.event_id_min_coverage:
                # The last 7 days were thin on ids too: never had them (standing), or lost them days
                # ago. A change point with the level before it tells the two apart.
                found = _event_id_shift(inputs, rows)
                if found is not None:
                    shift, onset = found
                    usual = shift.reference_ratio / (1 + shift.reference_ratio)
                    evidence.append(f"event_id share fell from {usual:.0%} since {onset:%a %H:00} UTC "
                                    f"(evidence {shift.llr:.1f} nats)")
            if usual is None or usual >= t.event_id_min_coverage:
                severity = "critical" if coverage < 0.5 else "warning"
            else:
                severity = "info"  # never had event ids: a standing gap, not news
        if name in feedback:
            then, pct = feedback[name]
            evidence.append(f"Meta dedupe feedback: server events with event_id {then:.0f}% a week ago, "
                            f"{pct:.0f}% now")
            severity = severity if severity in ("warning", "critical") else "warning"
        if severity is not None:
            out.append(make_finding(
                inputs, check="parity", code="parity.dedup_key_missing", event_name=name, severity=severity,
                summary=f"Server {name} events are missing event_id, so Meta cannot deduplicate them "
                        "against the browser pixel.",
                metrics={"observed": round(coverage, 3) if coverage is not None else None,
                         "baseline": round(usual, 3) if usual is not None else None,
                         "threshold": t.event_id_min_coverage, "events": n,
                         "meta_server_pct": feedback[name][1] if name in feedback else None},
                evidence=evidence,
            ))
    return out


def _event_id_pcts(snapshot: QualitySnapshot | None) -> dict[str, tuple[float | None, float | None]]:
    """Event -> (browser %, server %) of events carrying an event_id, from Meta's dedupe feedback."""
    if snapshot is None:
        return {}
    return {q.event_name: (fb.browser_pct, fb.server_pct) for q in snapshot.events
            for fb in q.dedupe_key_feedback if fb.dedupe_key == "event_id"}


def _fall_needed(share_pct: float, browser: dict[datetime, float], since: datetime, now: datetime) -> float:
    """Points Meta's browser eventID share must fall between two reads to be more than chance."""
    between = sum(c for h, c in browser.items() if since - HOUR <= h < now)
    window = sum(c for h, c in browser.items() if now - 2 * DAY <= h < now)
    if window <= 0:
        return BROWSER_ID_FALL
    p = min(max(share_pct / 100, 0.0), 1.0)
    sd: float = 100 * (max(between, 1.0) * max(p * (1 - p), 0.01 * 0.99)) ** 0.5 / window
    return min(BROWSER_ID_FALL, max(BROWSER_ID_FALL_MIN, BROWSER_ID_SD * sd))


def check_browser_event_ids(inputs: AuditInputs) -> list[Finding]:
    """parity.dedup_key_missing (browser): Meta says the pixel's events lost their eventID while the
    server's carry one, so the pairs cannot deduplicate. Only Meta sees the browser side. Meta's
    figure covers about 48 hours, so a total loss shows within hours; a share that was already low a
    week ago is standing (info)."""
    t = inputs.thresholds
    floor = 100 * t.event_id_min_coverage
    before = _event_id_pcts(week_earlier(inputs))
    # Meta's share moves slowly (it covers about two days), so a fall within the day is news before
    # the share crosses the floor: BROWSER_ID_FALL points below a snapshot a few hours to a day old.
    now_at = inputs.quality.fetched_at if inputs.quality else None
    recent = [q for q in inputs.quality_history
              if now_at is not None and 3 * HOUR <= now_at - q.fetched_at <= DAY]
    earlier: dict[str, tuple[float, datetime]] = {}
    for snapshot in recent:  # the highest share of the day, per event, and when it was read
        for name, (b, _srv) in _event_id_pcts(snapshot).items():
            if b is not None and (name not in earlier or earlier[name][0] < b):
                earlier[name] = (b, snapshot.fetched_at)
    browser_counts = {name: series for (name, source), series in meta_counts(inputs).items()
                      if source == "browser"}
    out: list[Finding] = []
    for name, (browser, server) in sorted(_event_id_pcts(inputs.quality).items()):
        if browser is None or server is None or server < floor:
            continue
        falling = name in earlier and now_at is not None and earlier[name][0] - browser >= _fall_needed(
            earlier[name][0], browser_counts.get(name, {}), earlier[name][1], now_at)
        if browser >= floor and not falling:
            continue
        then = before.get(name, (None, None))[0]
        standing = then is not None and then < floor
        out.append(make_finding(
            inputs, check="parity", code="parity.dedup_key_missing", event_name=name,
            severity="info" if standing else "critical" if browser < 50 else "warning",
            summary=f"Only {browser:.0f}% of browser {name} events carry an eventID ({server:.0f}% of server "
                    "ones do), so Meta cannot deduplicate the pairs and counts conversions twice.",
            metrics={"source": "browser", "observed": round(browser / 100, 3), "threshold": t.event_id_min_coverage,
                     "baseline": round(then / 100, 3) if then is not None else None,
                     "meta_server_pct": server, "standing": int(standing)},
            evidence=[f"Meta dedupe feedback for {name}: browser events with event_id {browser:.0f}%, server "
                      f"{server:.0f}%" + (f"; a week ago browser {then:.0f}%" if then is not None else "")],
        ))
    return out


def check_parity(inputs: AuditInputs) -> list[Finding]:
    """All parity findings for the audited window."""
    return merge_same_problem(
        [*check_browser_server(inputs), *check_orders(inputs), *check_event_ids(inputs),
         *check_browser_event_ids(inputs)]
    )
