"""Duplicates check: events sent more than once, told apart by what Meta does with them.

- ``duplicates.repeated_event_ids`` (warning): server events that repeat an event_id already sent
  for the same event name: a sender re-delivering events that had got through (a retry storm, an
  at-least-once queue replaying, a webhook registered twice). Meta's documentation is ambiguous about
  two server events with the same event_id (it promises deduplication between browser and server),
  so the check asks Meta's own counts: ``metrics.meta_counted`` is 1 when Meta's server count of
  those hours matches the ledger's events with the copies (the copies were counted: conversions are
  over-counted, ``duplicate_events``), 0 when it matches the events without them (the requests only
  waste rate-limit quota: a warning, no incident; ``tools.diagnosis.rules.fallback_cause``).
- ``duplicates.double_counted`` (warning / critical): the same order reaching Meta as two Purchases
  under different event_ids (or without one), which Meta cannot deduplicate, so conversions are
  over-counted (``duplicate_events``). Found through orders (two Purchases with the same
  ``custom_data.order_id``; more Purchases than the shop has orders) and, when no order id tells two
  Purchases apart, through collisions of (hashed user, value, currency) within a minute. The ledger
  counts both at ingest (``tools.ledger.rollups.PurchaseIndex``).

Each share is judged against the pixel's own last 7 days (``tools.checks.stats.judge_share``): a
share already there at that level is ``info`` with ``metrics.standing``; only a new or clearly
higher one is a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tools.checks.series import (
    MIN_SHARE_EVENTS,
    ledger_by_event,
    meta_counts,
    pool_until,
    span_label,
    total_reaches,
    window_hours,
)
from tools.checks.stats import ShareVerdict, judge_share, open_since, usual_counts
from tools.checks.types import AuditInputs, EventHour, Finding, Source, make_finding
from tools.timeutil import DAY, HOUR

PURCHASE = "Purchase"
HISTORY_DAYS = 7
# Repeated event ids below this share of an event are left alone: an at-least-once sender repeats
# a few events after timeouts, and Meta drops the copies anyway.
REPEAT_FLOOR = 0.05
# Purchases counted twice below this share are left alone: a customer may genuinely place the same
# order twice within a minute, and a couple of percent is below what a person would act on.
DOUBLE_FLOOR = 0.02
# Purchases beyond the shop's orders below this share are left alone: an order and its Purchase
# may fall on either side of an hour boundary, and a shop may sell a little outside its feed.
ORDERS_EXCESS_MIN = 0.25
# A name is judged while it had events within this many hours before the window: a batch sender may
# not have flushed the audited hour yet, and a storm seen an hour ago is still news.
RECENT_HOURS = 6
# Repeats needed before Meta's count can say whether it kept them (a few events may sit on either side
# of an hour boundary or still wait in a sender's queue).
MIN_COUNTED_REPEATS = 5


def _history_days(inputs: AuditInputs, name: str, rows: dict[datetime, EventHour],
                  start: datetime) -> list[list[EventHour]]:
    """Rows of the 7 days before ``start``, one list per day (most recent first), without the hours
    of an open duplicate_events incident (stats.open_since)."""
    end = min(start, open_since(inputs, ("duplicate_events",), name) or start)
    days: list[list[EventHour]] = [[] for _ in range(HISTORY_DAYS)]
    for hour, row in rows.items():
        if max(start - HISTORY_DAYS * DAY, inputs.history_start) <= hour < end:
            days[(start - hour - HOUR) // DAY].append(row)
    return days


def _judge(now: list[EventHour], days: list[list[EventHour]], count: Callable[[list[EventHour]], tuple[int, int]],
           floor: float) -> tuple[ShareVerdict, int, int]:
    k, n = count(now)
    k_hist, n_hist = usual_counts([count(day) for day in days])
    return judge_share(k, n, k_hist, n_hist, floor=floor), k, n


def _repeats(rows: list[EventHour]) -> tuple[int, int]:
    return sum(r.duplicate_event_ids for r in rows), sum(r.events for r in rows)


def _doubles(rows: list[EventHour]) -> tuple[int, int]:
    """(Purchases counted twice, distinct Purchases: repeats of an event_id excluded)."""
    return (sum(r.double_order_ids + r.double_purchase_keys for r in rows),
            sum(r.events - r.duplicate_event_ids for r in rows))


def _usual_line(v: ShareVerdict) -> str:
    return "no history" if v.usual is None else f"previous {HISTORY_DAYS} days: {v.usual:.1%}"


def check_repeated_event_ids(inputs: AuditInputs) -> list[Finding]:
    """duplicates.repeated_event_ids per event name."""
    window = window_hours(inputs)
    recent = window[0] - RECENT_HOURS * HOUR
    meta = meta_counts(inputs) if inputs.meta_counts is not None else None  # read once, not per name
    out: list[Finding] = []
    for name, rows in sorted(ledger_by_event(inputs).items()):
        if not any(recent <= h < inputs.window_end and r.events for h, r in rows.items()):
            continue
        events = {h: r.events for h, r in rows.items()}
        hours = pool_until(inputs, total_reaches(events, MIN_SHARE_EVENTS))
        now = [rows[h] for h in hours if h in rows]
        verdict, k, n = _judge(now, _history_days(inputs, name, rows, hours[0]), _repeats, REPEAT_FLOOR)
        if not verdict.above_floor:
            continue
        counted = _meta_counted(meta, name, hours, n, k)
        if counted:
            summary = (f"{verdict.share:.0%} of server {name} events ({k} of {n}) repeat an event_id already "
                       "sent, and Meta counted the copies: its server count of those hours matches the events "
                       "with the repeats, so conversions are over-counted.")
        else:
            summary = (f"{verdict.share:.0%} of server {name} events ({k} of {n}) repeat an event_id already "
                       "sent: the sender re-delivers events that had got through. "
                       + ("Meta's counts show it dropped the copies" if counted is not None else
                          "Meta normally drops such copies") +
                       ", so nothing is counted twice, but the requests waste rate-limit quota and point at a "
                       "sender retrying blindly.")
        if verdict.standing:
            summary += " This is the pixel's usual level: a standing condition."
        out.append(make_finding(
            inputs, check="duplicates", code="duplicates.repeated_event_ids", event_name=name,
            severity="warning" if verdict.news else "info", summary=summary,
            metrics={"observed": round(verdict.share, 3),
                     "baseline": None if verdict.usual is None else round(verdict.usual, 4),
                     "threshold": REPEAT_FLOOR, "repeats": k, "events": n, "standing": verdict.standing,
                     "p_value": float(f"{verdict.p_value:.3g}"), "hours": len(hours),
                     "meta_counted": None if counted is None else int(counted)},
            evidence=[f"{span_label(hours)}: {k} of {n} {name} events reuse an earlier event_id "
                      f"({_usual_line(verdict)})"],
        ))
    return out


def _meta_counted(meta: dict[tuple[str, Source], dict[datetime, float]] | None, name: str, hours: list[datetime],
                  events: int, repeats: int) -> bool | None:
    """Did Meta count the repeated copies? Its server count of ``hours`` is nearer the ledger's events
    with the repeats (True) or without them (False); None without Meta's stats or with too few repeats."""
    if meta is None or repeats < MIN_COUNTED_REPEATS:
        return None
    counts = meta.get((name, "server"), {})
    counted = sum(counts.get(h, 0) for h in hours)
    return counted >= events - repeats / 2


def _orders_excess(inputs: AuditInputs, rows: dict[datetime, EventHour]) -> dict[str, float] | None:
    """More distinct Purchases than the shop has orders, clearly beyond the pixel's usual excess.

    The Purchases beyond the orders (``max(0, purchases - orders)`` of the purchases) are judged like
    any other bad share against the same share per day of the last 7 days, with ``ORDERS_EXCESS_MIN``
    as the floor: a shop that always reports some Purchases its orders feed lacks is standing, and
    an order and its Purchase falling on either side of an hour boundary is noise, not news.
    """
    if not inputs.has_orders or not inputs.order_hours:
        return None
    orders = {r.hour: r.orders for r in inputs.order_hours}

    def purchases(hours: list[datetime]) -> int:
        return sum(rows[h].events - rows[h].duplicate_event_ids for h in hours if h in rows)

    hours = pool_until(inputs, lambda hs: sum(orders.get(h, 0) for h in hs) >= MIN_SHARE_EVENTS)
    o, p = sum(orders.get(h, 0) for h in hours), purchases(hours)
    if o < inputs.thresholds.min_baseline_events:
        return None  # no orders recorded lately (a feed not sent yet): nothing to compare
    start = hours[0]
    end = min(start, open_since(inputs, ("duplicate_events",), PURCHASE) or start)
    days: list[list[datetime]] = [[] for _ in range(HISTORY_DAYS)]
    for hour in set(orders) | set(rows):
        if max(start - HISTORY_DAYS * DAY, inputs.history_start) <= hour < end:
            days[(start - hour - HOUR) // DAY].append(hour)
    per_day = [(max(0, purchases(d) - sum(orders.get(h, 0) for h in d)), purchases(d)) for d in days]
    k_hist, n_hist = usual_counts(per_day)
    verdict = judge_share(max(0, p - o), p, k_hist, n_hist, floor=ORDERS_EXCESS_MIN)
    if not verdict.news:
        return None
    return {"purchases": p, "orders": o, "share": verdict.share, "hours": len(hours),
            "usual": verdict.usual or 0.0, "p_value": verdict.p_value}


def check_double_counted(inputs: AuditInputs) -> list[Finding]:
    """duplicates.double_counted for Purchases (by order id, purchase key, or orders count)."""
    rows = ledger_by_event(inputs).get(PURCHASE, {})
    if not any(h in rows and rows[h].events for h in window_hours(inputs)):
        return []
    events = {h: r.events for h, r in rows.items()}
    hours = pool_until(inputs, lambda hs: sum(events.get(h, 0) for h in hs) >= MIN_SHARE_EVENTS)
    now = [rows[h] for h in hours if h in rows]
    verdict, k, n = _judge(now, _history_days(inputs, PURCHASE, rows, hours[0]), _doubles, DOUBLE_FLOOR)
    by_order = sum(r.double_order_ids for r in now)
    by_key = sum(r.double_purchase_keys for r in now)
    excess = _orders_excess(inputs, rows)
    if not verdict.above_floor and excess is None:
        return []
    news = verdict.news or excess is not None
    share = max(verdict.share, excess["share"] if excess else 0.0)
    methods = [m for m, found in (("order_id", by_order), ("purchase_key", by_key)) if found]
    evidence = []
    if verdict.above_floor:
        evidence.append(f"{span_label(hours)}: {k} of {n} Purchases repeat an earlier order under another "
                        f"event_id ({by_order} by order_id, {by_key} by same user, value and minute; "
                        f"{_usual_line(verdict)})")
    if excess:
        methods.append("orders")
        evidence.append(f"{excess['hours']:.0f} h to the audited hour: {excess['purchases']:.0f} distinct "
                        f"Purchases for {excess['orders']:.0f} shop orders ({excess['share']:.0%} beyond the "
                        f"orders; previous {HISTORY_DAYS} days: {excess['usual']:.0%})")
    summary = (f"About {share:.0%} of server Purchases count an order that was already sent, under "
               "another event_id: Meta cannot deduplicate them, so conversions are over-counted.")
    if not news:
        summary += " This is the pixel's usual level: a standing condition."
    return [make_finding(
        inputs, check="duplicates", code="duplicates.double_counted", event_name=PURCHASE,
        severity=("critical" if share >= 0.3 else "warning") if news else "info", summary=summary,
        metrics={"observed": round(share, 3),
                 "baseline": None if verdict.usual is None else round(verdict.usual, 4),
                 "threshold": DOUBLE_FLOOR, "doubles": k, "purchases": n, "by_order_id": by_order,
                 "by_purchase_key": by_key, "methods": ",".join(methods), "standing": not news,
                 "orders": int(excess["orders"]) if excess else None,
                 "p_value": float(f"{min(verdict.p_value, excess['p_value'] if excess else 1.0):.3g}"),
                 "hours": len(hours)},
        evidence=evidence,
    )]


def check_duplicates(inputs: AuditInputs) -> list[Finding]:
    """All duplicates findings for the audited window."""
    return [*check_repeated_event_ids(inputs), *check_double_counted(inputs)]
