"""Delivery check: what Meta answered to our sends, what was never sent, and whether we could read Meta.

Graph error codes (docs/meta-api.md): 190 invalid/expired token; 100 with a subcode is an invalid
parameter that rejects the whole batch (2804001 bad fbc, 2804003 too old, ...); 4, 17, 613 and
80004 are rate limits; 1 and 2 are transient and counted with transport errors.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from tools.checks.series import hour_label, merge_same_problem, span_label, window_hours
from tools.checks.types import LAG_BUCKET_EDGES, AuditInputs, DeliveryHour, Finding, Severity, make_finding
from tools.timeutil import HOUR, META_MAX_EVENT_AGE, to_iso

TOKEN_CODES = frozenset({190})
RATE_LIMIT_CODES = frozenset({4, 17, 613, 80004})
TRANSIENT_CODES = frozenset({1, 2})
# The shop normally delivers within the hour if it did in at least this share of busy past hours.
# Share of a window's events left undelivered that means a send was skipped (a 15-minute batcher
# normally leaves at most the last quarter-hour waiting).
NOT_SENT_SHARE = 0.6
# Draining a backlog: at least MIN_DRAINED_EVENTS of the events delivered since just before the first
# unsent hour went out an hour or more after their event_time, DRAIN_FACTOR times what the sender's
# usual share of late deliveries gives.
DRAIN_FACTOR = 3.0
MIN_DRAINED_EVENTS = 2
SENDS_HOURLY_SHARE = 0.5
MIN_TRANSPORT_ERRORS = 3


def parse_error_key(key: str) -> tuple[int | None, int | None]:
    """'100/2804001' -> (100, 2804001); '190/' -> (190, None); junk -> (None, None)."""
    code, _, subcode = key.partition("/")
    try:
        return int(code), (int(subcode) if subcode.strip() else None)
    except ValueError:
        return None, None


def _window_rows(inputs: AuditInputs) -> tuple[list[datetime], list[DeliveryHour]]:
    hours = window_hours(inputs)
    wanted = set(hours)
    return hours, [r for r in inputs.delivery_hours if r.hour in wanted]


def check_errors(inputs: AuditInputs) -> list[Finding]:
    """token_invalid, rejected, rate_limited, transport_errors and partial_receipt in the window."""
    t = inputs.thresholds
    hours, rows = _window_rows(inputs)
    attempts = sum(r.attempts for r in rows)
    if not attempts:
        return []
    label = span_label(hours)
    by_kind: dict[str, Counter[tuple[int, int | None]]] = {
        "token": Counter(), "rejected": Counter(), "rate": Counter(), "transient": Counter(),
    }
    for row in rows:
        for key, count in row.errors.items():
            code, subcode = parse_error_key(key)
            if code is None:
                continue
            kind = ("token" if code in TOKEN_CODES else "rate" if code in RATE_LIMIT_CODES
                    else "transient" if code in TRANSIENT_CODES else "rejected")
            by_kind[kind][(code, subcode)] += count
    out: list[Finding] = []

    def emit(code: str, severity: Severity, summary: str, counter: Counter[tuple[int, int | None]],
             extra: dict[str, float | int | str | None]) -> None:
        failed = sum(counter.values())
        (top_code, top_sub), _ = counter.most_common(1)[0]
        out.append(make_finding(
            inputs, check="delivery", code=code, severity=severity, summary=summary,
            metrics={"observed": round(failed / attempts, 3), "baseline": None,
                     "threshold": t.delivery_error_share, "failed_attempts": failed, "attempts": attempts,
                     "code": top_code, "subcode": top_sub, **extra},
            evidence=[f"{label}: {n} of {attempts} send attempts failed with code {c}"
                      + (f" subcode {s}" if s is not None else "") for (c, s), n in counter.most_common()],
        ))

    token = by_kind["token"]
    if token and sum(token.values()) / attempts >= t.delivery_error_share:
        emit("delivery.token_invalid", "critical",
             "Meta refuses the access token (code 190): server events are not being accepted.", token,
             {"source": "deliveries"})
    rejected = by_kind["rejected"]
    if rejected and sum(rejected.values()) / attempts >= t.delivery_error_share:
        share = sum(rejected.values()) / attempts
        emit("delivery.rejected", "critical" if share >= 0.5 else "warning",
             f"Meta rejected {share:.0%} of send attempts as invalid; every event in those batches was lost.",
             rejected, {})
    rate = by_kind["rate"]
    if rate and sum(rate.values()) / attempts >= t.delivery_error_share:
        emit("delivery.rate_limited", "warning",
             "Meta is rate-limiting our sends; events are retried and arrive late.", rate,
             {"retried_attempts": sum(r.retried_attempts for r in rows)})
    transport = sum(r.transport_errors for r in rows) + sum(by_kind["transient"].values())
    if transport >= MIN_TRANSPORT_ERRORS and transport / attempts >= t.delivery_error_share:
        out.append(make_finding(
            inputs, check="delivery", code="delivery.transport_errors", severity="warning",
            summary=f"{transport} of {attempts} sends to Meta failed in transit (timeouts, 5xx); "
                    "the events are kept and retried.",
            metrics={"observed": round(transport / attempts, 3), "baseline": None,
                     "threshold": t.delivery_error_share, "transport_errors": transport,
                     "attempts": attempts},
            evidence=[f"{label}: {transport} transport or transient failures out of {attempts} attempts"],
        ))
    clean = [r for r in rows if not r.failed_attempts and not r.transport_errors]
    sent, received = sum(r.events_sent for r in clean), sum(r.events_received for r in clean)
    if sent and (sent - received) / sent > t.hash_bad_share and sent - received >= t.min_baseline_events:
        out.append(make_finding(
            inputs, check="delivery", code="delivery.partial_receipt", severity="warning",
            summary=f"Meta acknowledged {received} of {sent} events we sent without an error.",
            metrics={"observed": received, "baseline": sent, "threshold": t.hash_bad_share,
                     "events_sent": sent, "events_received": received},
            evidence=[f"{label}: events_sent={sent}, events_received={received} on successful requests"],
        ))
    return out


def _unsent_hours(inputs: AuditInputs) -> dict[datetime, tuple[int, int, dict[str, int]]]:
    """Hour -> (events recorded, events never sent, undelivered per event name) for every hour of
    Meta's replay window up to the audited one, where the ledger holds undelivered events."""
    floor = max(inputs.history_start, inputs.window_end - META_MAX_EVENT_AGE + HOUR)
    events: dict[datetime, int] = defaultdict(int)
    stuck: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in inputs.event_hours:
        if row.hour < floor:
            continue
        events[row.hour] += row.events
        if row.undelivered:
            stuck[row.hour][row.event_name] = row.undelivered
    # Events that were sent and refused (token, rejection) are the other checks' business.
    refused: dict[datetime, int] = defaultdict(int)
    for r in inputs.delivery_hours:
        refused[r.hour] += max(0, r.events_sent - r.events_received)
    return {hour: (events[hour], max(0, sum(names.values()) - refused[hour]), names)
            for hour, names in stuck.items()}


def _is_gap(t_min: float, events: int, unsent: int, names: dict[str, int],
            by_name_events: dict[str, int]) -> bool:
    """Most of an hour's events recorded but never sent, across event names (one name stuck alone
    is that event's pipeline, not the sender)."""
    if unsent < t_min or unsent < NOT_SENT_SHARE * events:
        return False
    return all(names.get(name, 0) >= 0.5 * n for name, n in by_name_events.items() if n >= t_min)


def _late_share(rows: list[tuple[int, ...]]) -> tuple[int, int]:
    """(events delivered, of them delivered an hour or more after their event_time) of lag histograms."""
    lower = (0, *LAG_BUCKET_EDGES)
    delivered = late = 0
    for buckets in rows:
        for edge, count in zip(lower, buckets, strict=False):
            delivered += count
            if edge >= 3600:
                late += count
    return delivered, late


def _unsent_pattern(inputs: AuditInputs, first: datetime, gaps: set[datetime]) -> tuple[str, bool]:
    """How the unsent hours sit in time, and whether the sender is draining a backlog.

    ``gap``: a later hour's events went out while the first unsent hour's did not; the sender moved
    on and skipped them (a batch that never ran). ``suffix``: nothing after the first unsent hour was
    sent; a stopped sender and a backed-up queue look alike until the queue drains. ``draining``:
    the events delivered from the hour before the first unsent one on went out an hour or more late,
    far more often than the sender's usual (a queue that is delivering, hours behind).
    """
    totals: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    recent: list[tuple[int, ...]] = []
    usual: list[tuple[int, ...]] = []
    for row in inputs.event_hours:
        if row.hour > first and row.hour not in gaps:
            totals[row.hour][0] += row.events
            totals[row.hour][1] += row.undelivered
        if row.hour >= first - HOUR:
            recent.append(row.lag_buckets)
        elif row.hour >= first - HOUR - 7 * 24 * HOUR:
            usual.append(row.lag_buckets)
    moved_on = any(events - unsent >= max(1, events / 2) for events, unsent in totals.values() if events)
    delivered, late = _late_share(recent)
    usual_delivered, usual_late = _late_share(usual)
    # Late deliveries well beyond what the sender's usual share of late ones explains (the hour before
    # the gap may be wholly on time, so the count, not the share of all recent deliveries, decides).
    expected = delivered * (usual_late / usual_delivered if usual_delivered else 0.0)
    draining = late >= MIN_DRAINED_EVENTS and late >= DRAIN_FACTOR * expected
    return ("gap" if moved_on else "suffix"), draining


def check_not_sent(inputs: AuditInputs) -> list[Finding]:
    """delivery.not_sent: hours whose events sit in the ledger, recorded but never sent.

    Looks at every hour of Meta's 7-day replay window, not only the audited one: a gap three hours
    ago that nobody replayed is still recoverable, so it is reported (with the replay's window) until
    it is replayed or too old. An hour is a gap when most of its events were never sent, judged by
    share rather than by "no attempt at all" (a batch sender's run at the top of the hour sends the
    previous hour's tail). Only for shops that normally send within the hour (a daily batch uploader
    is judged by latency).
    """
    t = inputs.thresholds
    window = window_hours(inputs)
    hours = _unsent_hours(inputs)
    if not hours:
        return []
    per_name: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in inputs.event_hours:
        if row.hour in hours:
            per_name[row.hour][row.event_name] = per_name[row.hour].get(row.event_name, 0) + row.events
    gaps = sorted(h for h, (events, unsent, names) in hours.items()
                  if _is_gap(t.min_baseline_events, events, unsent, names, per_name[h]))
    if not gaps:
        return []
    first = gaps[0]
    attempted_hours = {r.hour for r in inputs.delivery_hours if r.attempts and r.hour < first}
    busy_hours = {r.hour for r in inputs.event_hours if r.events and r.hour < first}
    if not busy_hours or len(busy_hours & attempted_hours) / len(busy_hours) < SENDS_HOURLY_SHARE:
        return []
    unsent = sum(hours[h][1] for h in gaps)
    recorded = sum(hours[h][0] for h in gaps)
    names: dict[str, int] = defaultdict(int)
    for h in gaps:
        for name, n in hours[h][2].items():
            names[name] += n
    in_window = any(h in window for h in gaps)
    attempts = sum(r.attempts for r in inputs.delivery_hours if r.hour in window)
    # Events Meta accepted in the window: a sender that is still delivering something (newer events,
    # the previous hour's tail) skipped a batch; one that delivered nothing may be a backlog instead.
    received = sum(r.events_received for r in inputs.delivery_hours if r.hour in window)
    share = unsent / recorded if recorded else 1.0
    pattern, draining = _unsent_pattern(inputs, first, set(gaps))
    silent_hours = round((inputs.window_end - first) / HOUR)
    where = span_label(window) if gaps == window else f"{len(gaps)} hour(s) since {hour_label(first)}"
    return [make_finding(
        inputs, check="delivery", code="delivery.not_sent", severity="critical" if in_window else "warning",
        summary=f"{unsent} server events of {where} ({share:.0%}) were recorded but never sent to Meta"
                + ("." if in_window else "; they can still be replayed within Meta's 7 days."),
        metrics={"observed": unsent, "baseline": None, "threshold": NOT_SENT_SHARE, "undelivered": unsent,
                 "undelivered_share": round(share, 3), "attempts": attempts,
                 "event_names": ",".join(sorted(names)), "since": to_iso(first),
                 "until": to_iso(gaps[-1] + HOUR), "gap_hours": len(gaps), "in_window": int(in_window),
                 "window_received": received, "pattern": pattern, "draining": int(draining),
                 "silent_hours": silent_hours},
        evidence=[f"{span_label([h])}: {hours[h][1]} of {hours[h][0]} events recorded, never sent"
                  for h in gaps[-12:]]
        + ([f"{span_label(window)}: {attempts} delivery attempt(s), none of them for these events"]
           if in_window else []),
    )]


def check_meta_reads(inputs: AuditInputs) -> list[Finding]:
    """delivery.token_invalid / delivery.meta_unreachable from failed reads of Meta's side."""
    errors = inputs.meta_read_errors
    if not errors:
        return []
    token = [e for e in errors if e.kind == "token_invalid" or e.code in TOKEN_CODES]
    other = [e for e in errors if e not in token]
    out: list[Finding] = []
    if token:
        out.append(make_finding(
            inputs, check="delivery", code="delivery.token_invalid", severity="critical",
            summary="Meta refuses the access token (code 190) when we read stats and quality.",
            metrics={"source": "meta_reads", "code": token[0].code, "subcode": token[0].subcode,
                     "observed": len(token), "baseline": 0, "threshold": 0},
            evidence=[f"{e.endpoint} read failed: code {e.code} subcode {e.subcode}" for e in token],
        ))
    if other:
        out.append(make_finding(
            inputs, check="delivery", code="delivery.meta_unreachable", severity="warning",
            summary="Meta's stats could not be read this hour; checks that compare with Meta were skipped.",
            metrics={"endpoints": ",".join(sorted({e.endpoint for e in other})),
                     "kind": other[0].kind, "code": other[0].code, "observed": len(other),
                     "baseline": 0, "threshold": 0},
            # The error's own message is not repeated: it may quote a URL with the token in it.
            evidence=[f"{e.endpoint} read failed ({e.kind}, code {e.code})" for e in other],
        ))
    return out


def check_delivery(inputs: AuditInputs) -> list[Finding]:
    """All delivery findings for the audited window (token findings from sends and reads merge)."""
    return merge_same_problem([*check_errors(inputs), *check_not_sent(inputs), *check_meta_reads(inputs)])
