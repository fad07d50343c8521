"""Delivery check: what Meta answered to our sends, what was never sent, and whether we could read Meta.

Graph error codes (meta-capi-facts.md): 190 invalid/expired token; 100 with a subcode is an invalid
parameter that rejects the whole batch (2804001 bad fbc, 2804003 too old, ...); 4, 17, 613 and
80004 are rate limits; 1 and 2 are transient and counted with transport errors.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from tools.checks.series import ledger_by_event, merge_same_problem, span_label, window_hours
from tools.checks.types import AuditInputs, DeliveryHour, Finding, Severity, make_finding

TOKEN_CODES = frozenset({190})
RATE_LIMIT_CODES = frozenset({4, 17, 613, 80004})
TRANSIENT_CODES = frozenset({1, 2})
# The shop normally delivers within the hour if it did in at least this share of busy past hours.
# Share of a window's events left undelivered that means a send was skipped (a 15-minute batcher
# normally leaves at most the last quarter-hour waiting).
NOT_SENT_SHARE = 0.6
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

    def emit(code: str, severity: Severity, summary: str, counter: Counter, extra: dict) -> None:
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


def check_not_sent(inputs: AuditInputs) -> list[Finding]:
    """delivery.not_sent: most of the window's events sit in the ledger undelivered.

    Judged by the share of the window's events still undelivered rather than by "no attempt at all":
    a batch sender's run at the top of the hour sends the previous hour's tail, so a skipped batch
    still shows attempts in the window. Only for shops that normally send within the hour (a daily
    batch uploader is judged by latency).
    """
    t = inputs.thresholds
    hours, rows = _window_rows(inputs)
    ledger = ledger_by_event(inputs)
    window_events = sum(by_hour[h].events for by_hour in ledger.values() for h in hours if h in by_hour)
    undelivered = {
        name: sum(by_hour[h].undelivered for h in hours if h in by_hour) for name, by_hour in ledger.items()
    }
    undelivered = {name: n for name, n in undelivered.items() if n > 0}
    # Events that were sent and refused (token, rejection) are the other checks' business.
    refused = sum(max(0, r.events_sent - r.events_received) for r in rows)
    total = sum(undelivered.values())
    unsent = total - refused
    if unsent < t.min_baseline_events or unsent < NOT_SENT_SHARE * window_events:
        return []
    # A skipped send leaves every event name behind; one name stuck alone is that event's pipeline
    # (server_events_down), not the sender.
    for by_hour in ledger.values():
        events = sum(by_hour[h].events for h in hours if h in by_hour)
        stuck = sum(by_hour[h].undelivered for h in hours if h in by_hour)
        if events >= t.min_baseline_events and stuck < 0.5 * events:
            return []
    attempted_hours = {r.hour for r in inputs.delivery_hours if r.attempts and r.hour < hours[0]}
    busy_hours = {r.hour for r in inputs.event_hours if r.events and r.hour < hours[0]}
    if not busy_hours or len(busy_hours & attempted_hours) / len(busy_hours) < SENDS_HOURLY_SHARE:
        return []
    attempts = sum(r.attempts for r in rows)
    share = unsent / window_events
    return [make_finding(
        inputs, check="delivery", code="delivery.not_sent", severity="critical",
        summary=f"{unsent} server events of {span_label(hours)} ({share:.0%}) were recorded but never sent "
                "to Meta.",
        metrics={"observed": unsent, "baseline": None, "threshold": NOT_SENT_SHARE, "undelivered": total,
                 "undelivered_share": round(share, 3), "attempts": attempts,
                 "event_names": ",".join(sorted(undelivered))},
        evidence=[f"{span_label(hours)}: {n} {name} events in the ledger, undelivered"
                  for name, n in sorted(undelivered.items())]
        + [f"{span_label(hours)}: {attempts} delivery attempt(s), none of them for these events"],
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
