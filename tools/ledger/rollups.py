"""Hourly rollups, kept incrementally as events, deliveries and orders are recorded.

Keys: (pixel_id, hour of event_time, event_name) for events; (pixel_id, hour of attempted_at) for
delivery attempts; (pixel_id, hour of created_at) for orders. Counters are columns incremented with
``INSERT ... ON CONFLICT DO UPDATE`` (SQLite and Postgres); the JSON maps are merged afterwards on
the rows that upsert just locked, so two writers never lose each other's increments.

``top`` keeps, per field and hour, a Misra-Gries summary of the first 16 hex characters of the
field's first hashed value (at most ``TOP_K`` entries, mergeable). It is exact while a field has no
more than ``TOP_K`` distinct values in the hour, and otherwise under-counts the leader by at most
carriers / (TOP_K + 1): enough to see one hash dominate a field.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.payload_quality import USER_BITS
from tools.checks.types import LAG_BUCKET_EDGES, OFFSET_EDGES
from tools.ledger.db import by_name
from tools.ledger.models import (
    ArrivalHourRollup,
    Delivery,
    DeliveryHourRollup,
    Event,
    EventHourRollup,
    Order,
    OrderHourRollup,
    PayloadHourRollup,
    table_of,
)
from tools.timeutil import META_MAX_EVENT_AGE, as_utc, floor_hour

TOP_K = 16
TOP_PREFIX = 16
FUTURE_TOLERANCE = timedelta(minutes=5)
# Per-field counters kept in EventHourRollup.detail (names follow tools.checks.types.EventHour).
FIELD_FLAGS = ("keys", "raw", "placeholder", "uppercase_hex", "not_sha256", "must_not_hash",
               "malformed", "invalid")
_FIELD_FLAG_SET = frozenset(FIELD_FLAGS)
EVENT_COUNTERS = ("events", "with_event_id", "duplicate_event_ids", "double_order_ids",
                  "double_purchase_keys", "too_old", "future_time", "undelivered")
PURCHASE = "Purchase"
# Two Purchases of the same user, value and currency this close in event_time are one order sent
# twice (unless their order ids differ): a person does not place two identical orders in a minute.
PURCHASE_COLLISION = timedelta(seconds=60)
# Payload rollups (``payload_hours``): at most this many masked examples per issue and hour; the user
# sketch is a bitmap of USER_BITS bits (OR-merged, so any order of batches gives the same row).
PAYLOAD_EXAMPLES = 3
# Hashed fields whose first value stands for "the user" in the user sketch, in order of preference.
USER_FIELDS = ("em", "external_id", "ph")
DELIVERY_COUNTERS = ("attempts", "events_sent", "events_received", "failed_attempts",
                     "retried_attempts", "transport_errors")


def lag_bucket(seconds: float) -> int:
    """Index into the lag histogram: edges are inclusive upper bounds, the last bucket is open."""
    return bisect_left(LAG_BUCKET_EDGES, seconds)


def merge_top(left: Mapping[str, int], right: Mapping[str, int], k: int = TOP_K) -> dict[str, int]:
    """Misra-Gries merge: add counts, then keep at most k entries by subtracting the (k+1)-th count."""
    merged = dict(left)
    for key, count in right.items():
        merged[key] = merged.get(key, 0) + count
    if len(merged) <= k:
        return merged
    cut = sorted(merged.values(), reverse=True)[k]
    return {key: count - cut for key, count in merged.items() if count - cut > 0}


def _add_counts(target: dict[str, int], other: Mapping[str, int]) -> None:
    for key, count in other.items():
        target[key] = target.get(key, 0) + count


def merge_detail(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two ``EventHourRollup.detail`` documents (both may be empty)."""
    out: dict[str, Any] = {}
    for flag in (*FIELD_FLAGS, "top_n"):
        counts = dict(left.get(flag, {}))
        _add_counts(counts, right.get(flag, {}))
        if counts:
            out[flag] = counts
    lag_left = list(left.get("lag") or [0] * (len(LAG_BUCKET_EDGES) + 1))
    for index, count in enumerate(right.get("lag") or ()):
        lag_left[index] += count
    out["lag"] = lag_left
    top: dict[str, dict[str, int]] = {name: dict(v) for name, v in left.get("top", {}).items()}
    for name, summary in right.get("top", {}).items():
        # A batch keeps exact counts (a valid summary); the merge bounds the result to TOP_K.
        top[name] = merge_top(top.get(name, {}), summary)
    if top:
        out["top"] = top
    return out


@dataclass
class EventHourDelta:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_COUNTERS, 0))
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class RollupDeltas:
    """Increments for one batch, aggregated in memory before they touch the database."""

    event_hours: dict[tuple[str, datetime, str], EventHourDelta] = field(default_factory=dict)
    delivery_hours: dict[tuple[str, datetime], dict[str, Any]] = field(default_factory=dict)
    order_hours: dict[tuple[str, datetime], dict[str, float]] = field(default_factory=dict)
    arrival_hours: dict[tuple[str, datetime], list[int]] = field(default_factory=dict)
    # (pixel, hour of event_time, event name) -> [events, detail] (see PayloadHourRollup).
    payload_hours: dict[tuple[str, datetime, str], list[Any]] = field(default_factory=dict)

    def event_hour(self, pixel_id: str, event_time: datetime, event_name: str) -> EventHourDelta:
        key = (pixel_id, floor_hour(event_time), event_name)
        delta = self.event_hours.get(key)
        if delta is None:
            delta = self.event_hours[key] = EventHourDelta()
        return delta

    def add_event(self, row: Mapping[str, Any], *, duplicate: bool, double: str | None = None) -> None:
        """Count one recorded event (columns of ``events``: event_time, received_at, flags, ...)."""
        # Runs once per event on every import: plain local work, no helper calls where avoidable.
        event_time, received_at = _utc(row["event_time"]), _utc(row["received_at"])
        key = (row["pixel_id"], event_time.replace(minute=0, second=0, microsecond=0), row["event_name"])
        delta = self.event_hours.get(key)
        if delta is None:
            delta = self.event_hours[key] = EventHourDelta()
        counters, flags, detail = delta.counters, row.get("flags") or {}, delta.detail
        first_attempt = row.get("first_attempt_at")
        if first_attempt is not None:
            first_attempt = _utc(first_attempt)
        counters["events"] += 1
        arrival_key = (row["pixel_id"], received_at.replace(minute=0, second=0, microsecond=0))
        arrival = self.arrival_hours.get(arrival_key)
        if arrival is None:
            arrival = self.arrival_hours[arrival_key] = [0] * (len(OFFSET_EDGES) + 1)
        arrival[bisect_left(OFFSET_EDGES, (received_at - event_time).total_seconds())] += 1
        counters["with_event_id"] += row.get("event_id") is not None
        counters["duplicate_event_ids"] += duplicate
        if double is not None:
            counters["double_order_ids" if double == "order" else "double_purchase_keys"] += 1
        counters["too_old"] += (received_at - event_time > META_MAX_EVENT_AGE or (
            first_attempt is not None and first_attempt - event_time > META_MAX_EVENT_AGE))
        counters["future_time"] += event_time - received_at > FUTURE_TOLERANCE
        counters["undelivered"] += row.get("delivery_status") != "delivered"
        # Counted in place; each flag has its own map, so the order flags are visited in is free.
        for flag, names in flags.items():
            if flag == "top" or flag not in _FIELD_FLAG_SET or not names:
                continue
            counts = detail.get(flag)
            if counts is None:
                counts = detail[flag] = {}
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        top = flags.get("top")
        if top:
            summaries, carriers = detail.setdefault("top", {}), detail.setdefault("top_n", {})
            for name, prefix in top.items():
                summary = summaries.setdefault(name, {})
                summary[prefix] = summary.get(prefix, 0) + 1
                carriers[name] = carriers.get(name, 0) + 1
        lag = detail.get("lag")
        if lag is None:
            lag = detail["lag"] = [0] * (len(LAG_BUCKET_EDGES) + 1)
        if first_attempt is not None:
            lag[bisect_left(LAG_BUCKET_EDGES, (first_attempt - event_time).total_seconds())] += 1
        payload = flags.get("payload") or {}
        self._add_payload(key, payload, top)
        if payload.get("late"):
            # Also counted in the hour it arrived: a copy later than 48 hours is, by definition, never
            # in the recent event-time hours the dedupe check reads (tools.checks.dedupe_reasons).
            self._add_late_arrival((row["pixel_id"], arrival_key[1], row["event_name"]))

    def _add_payload(self, key: tuple[str, datetime, str], flags: Mapping[str, Any],
                     top: Mapping[str, str] | None) -> None:
        """Count one event into ``payload_hours`` from its ``flags["payload"]`` (``tools.ledger.payload``)
        and the hashed-value prefixes of ``flags["top"]`` (the user sketch)."""
        entry = self.payload_hours.get(key)
        if entry is None:
            entry = self.payload_hours[key] = [0, {}]
        entry[0] += 1
        detail: dict[str, Any] = entry[1]
        counts = detail.setdefault("n", {})
        issues = flags.get("pq")
        if issues:
            counted, examples = detail.setdefault("issues", {}), detail.setdefault("examples", {})
            for issue, example in issues.items():
                counted[issue] = counted.get(issue, 0) + 1
                kept = examples.setdefault(issue, [])
                if len(kept) < PAYLOAD_EXAMPLES and example not in kept:
                    kept.append(example)
        for name in ("web", "late", "idm"):
            if flags.get(name):
                counts[name] = counts.get(name, 0) + 1
        for name, summary_name in (("ip", "ip"), ("idf", "id_shapes")):
            value = flags.get(name)
            if value:
                summary = detail.setdefault(summary_name, {})
                summary[value] = summary.get(value, 0) + 1
                counts[name] = counts.get(name, 0) + 1
        user = next((top[name] for name in USER_FIELDS if top.get(name)), None) if top else None
        if user:
            counts["users"] = counts.get("users", 0) + 1
            bit = int(user[:4], 16) % USER_BITS
            detail["user_bits"] = f"{int(detail.get('user_bits') or '0', 16) | (1 << bit):x}"

    def _add_late_arrival(self, key: tuple[str, datetime, str]) -> None:
        """One copy that arrived in ``key``'s hour more than 48 hours after its event_time (``n.late_in``;
        the row's ``events`` counts events by event_time and is left alone)."""
        entry = self.payload_hours.get(key)
        if entry is None:
            entry = self.payload_hours[key] = [0, {}]
        counts = entry[1].setdefault("n", {})
        counts["late_in"] = counts.get("late_in", 0) + 1

    def add_first_attempt(self, row: Mapping[str, Any], *, attempted_at: datetime,
                          delivered_now: bool) -> None:
        """An already counted event got its first delivery attempt and/or got delivered."""
        delta = self.event_hour(row["pixel_id"], row["event_time"], row["event_name"])
        if row.get("first_attempt_at") is None:
            # In place (runs once per event of every delivery): the lag of this first attempt, and
            # "too old" when the attempt, not the arrival, is what came later than Meta's 7 days.
            event_time = _utc(row["event_time"])
            waited = _utc(attempted_at) - event_time
            lag = delta.detail.get("lag")
            if lag is None:
                lag = delta.detail["lag"] = [0] * (len(LAG_BUCKET_EDGES) + 1)
            lag[lag_bucket(waited.total_seconds())] += 1
            if waited > META_MAX_EVENT_AGE and not _utc(row["received_at"]) - event_time > META_MAX_EVENT_AGE:
                delta.counters["too_old"] += 1
        if delivered_now:
            delta.counters["undelivered"] -= 1

    def add_delivery(self, *, pixel_id: str, attempted_at: datetime, status: str, events_sent: int,
                     events_received: int, error_code: int | None, error_subcode: int | None,
                     retry_number: int) -> None:
        key = (pixel_id, floor_hour(attempted_at))
        hour = self.delivery_hours.setdefault(key, {**dict.fromkeys(DELIVERY_COUNTERS, 0), "errors": {}})
        failed = status != "delivered"
        hour["attempts"] += 1
        hour["events_sent"] += events_sent
        hour["events_received"] += events_received
        hour["failed_attempts"] += failed
        hour["retried_attempts"] += retry_number > 0
        if failed and error_code is None:
            hour["transport_errors"] += 1
        elif failed:
            code = f"{error_code}/{'' if error_subcode is None else error_subcode}"
            hour["errors"][code] = hour["errors"].get(code, 0) + 1

    def add_order(self, *, pixel_id: str, created_at: datetime, value: float, matched: bool) -> None:
        hour = self.order_hours.setdefault((pixel_id, floor_hour(created_at)),
                                           {"orders": 0, "matched": 0, "value": 0.0})
        hour["orders"] += 1
        hour["matched"] += matched
        hour["value"] += value

    def add_order_match(self, *, pixel_id: str, created_at: datetime) -> None:
        hour = self.order_hours.setdefault((pixel_id, floor_hour(created_at)),
                                           {"orders": 0, "matched": 0, "value": 0.0})
        hour["matched"] += 1


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else as_utc(value)


def is_too_old(row: Mapping[str, Any]) -> bool:
    """Older than Meta's 7 days when received, or when first sent."""
    event_time = as_utc(row["event_time"])
    if as_utc(row["received_at"]) - event_time > META_MAX_EVENT_AGE:
        return True
    first = row.get("first_attempt_at")
    return first is not None and as_utc(first) - event_time > META_MAX_EVENT_AGE


def dialect_insert(session: Session, table: Any) -> Any:
    name = session.get_bind().dialect.name
    return (postgresql.insert(table) if name == "postgresql" else sqlite.insert(table))


# The three statements of each rollup table's upsert, built on first use per dialect and table: building
# them (``excluded``, the SET clause, the tuple IN) cost more than executing them on every batch.
_UPSERT_STATEMENTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], str | None], tuple[Any, Any, Any]] = {}


def _upsert_statements(session: Session, model: Any, keys: tuple[str, ...], counters: tuple[str, ...],
                       json_column: str | None) -> tuple[Any, Any, Any]:
    """(insert .. on conflict add the counters, select the JSON column of the keys given as the
    expanding parameter ``keys`` for update, update the JSON column by key)."""
    table = table_of(model)
    cache_key = (session.get_bind().dialect.name, table.name, keys, counters, json_column)
    statements = _UPSERT_STATEMENTS.get(cache_key)
    if statements is None:
        stmt = dialect_insert(session, table)
        excluded = stmt.excluded
        upsert = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: table.c[c] + excluded[c] for c in counters})
        read = write = None
        if json_column is not None:
            key_cols = [table.c[k] for k in keys]
            read = select(*key_cols, table.c[json_column]).where(
                tuple_(*key_cols).in_(bindparam("keys", expanding=True))).with_for_update()
            write = update(table).where(and_(*[table.c[k] == bindparam(f"k_{k}") for k in keys])).values(
                {json_column: bindparam("new_json")})
        statements = _UPSERT_STATEMENTS[cache_key] = (upsert, read, write)
    return statements


def _upsert(session: Session, model: Any, keys: tuple[str, ...], counters: tuple[str, ...],
            rows: list[dict[str, Any]], json_column: str | None,
            merge: Any = None) -> None:
    """Increment counters (atomic upsert, which also locks the rows), then merge the JSON column."""
    if not rows:
        return
    upsert, read, write = _upsert_statements(session, model, keys, counters, json_column)
    rows.sort(key=lambda r: tuple(r[k] for k in keys))  # one lock order for every writer
    values = [{**{k: r[k] for k in keys}, **{c: r[c] for c in counters},
               **({json_column: {}} if json_column else {})} for r in rows]
    session.execute(upsert, values)
    if json_column is None:
        return
    current: dict[tuple[Any, ...], Any] = {}
    for chunk_start in range(0, len(rows), 500):
        chunk = [tuple(r[k] for k in keys) for r in rows[chunk_start:chunk_start + 500]]
        for found in session.execute(read, {"keys": chunk}):
            current[tuple(_key_value(v) for v in found[:-1])] = found[-1] or {}
    params = []
    for r in rows:
        key = tuple(_key_value(r[k]) for k in keys)
        params.append({**{f"k_{k}": r[k] for k in keys},
                       "new_json": merge(current.get(key, {}), r[json_column])})
    session.execute(write, params)


def _key_value(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value


def _merge_errors(left: Mapping[str, int], right: Mapping[str, int]) -> dict[str, int]:
    out = dict(left)
    _add_counts(out, right)
    return out


def merge_payload(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two ``PayloadHourRollup.detail`` documents (either may be empty)."""
    out: dict[str, Any] = {}
    for name in ("n", "issues"):
        counts = dict(left.get(name) or {})
        _add_counts(counts, right.get(name) or {})
        if counts:
            out[name] = counts
    examples = {issue: list(kept) for issue, kept in (left.get("examples") or {}).items()}
    for issue, kept in (right.get("examples") or {}).items():
        mine = examples.setdefault(issue, [])
        mine.extend(e for e in kept if e not in mine)
        del mine[PAYLOAD_EXAMPLES:]
    if examples:
        out["examples"] = examples
    for name in ("ip", "id_shapes"):
        if left.get(name) or right.get(name):
            out[name] = merge_top(left.get(name) or {}, right.get(name) or {})
    bits = int(left.get("user_bits") or "0", 16) | int(right.get("user_bits") or "0", 16)
    if bits:
        out["user_bits"] = f"{bits:x}"
    return out


def apply_deltas(session: Session, deltas: RollupDeltas) -> None:
    """Write one batch's increments to the three rollup tables (SQLite or Postgres)."""
    event_rows = [{"pixel_id": p, "hour": h, "event_name": n, **d.counters, "detail": d.detail}
                  for (p, h, n), d in deltas.event_hours.items()]
    _upsert(session, EventHourRollup, ("pixel_id", "hour", "event_name"), EVENT_COUNTERS,
            event_rows, "detail", merge_detail)
    delivery_rows = [{"pixel_id": p, "hour": h, **d} for (p, h), d in deltas.delivery_hours.items()]
    _upsert(session, DeliveryHourRollup, ("pixel_id", "hour"), DELIVERY_COUNTERS, delivery_rows,
            "errors", _merge_errors)
    order_rows = [{"pixel_id": p, "hour": h, **d} for (p, h), d in deltas.order_hours.items()]
    _upsert(session, OrderHourRollup, ("pixel_id", "hour"), ("orders", "matched", "value"),
            order_rows, None)
    arrival_rows = [{"pixel_id": p, "hour": h, "events": sum(o), "offsets": o}
                    for (p, h), o in deltas.arrival_hours.items()]
    _upsert(session, ArrivalHourRollup, ("pixel_id", "hour"), ("events",), arrival_rows, "offsets",
            merge_offsets)
    payload_rows = [{"pixel_id": p, "hour": h, "event_name": n, "events": e, "detail": d}
                    for (p, h, n), (e, d) in deltas.payload_hours.items()]
    _upsert(session, PayloadHourRollup, ("pixel_id", "hour", "event_name"), ("events",), payload_rows,
            "detail", merge_payload)


def merge_offsets(left: Sequence[int] | None, right: Sequence[int] | None) -> list[int]:
    """Add two offset histograms bucket by bucket (either may be empty)."""
    size = len(OFFSET_EDGES) + 1
    a, b = list(left or [0] * size), list(right or [0] * size)
    return [x + y for x, y in zip(a + [0] * (size - len(a)), b + [0] * (size - len(b)), strict=True)]


def event_rollup_columns() -> tuple[Any, ...]:
    """The ``events`` columns a rollup contribution reads (payload is not needed: it may be purged)."""
    return (col(Event.id), col(Event.pixel_id), col(Event.event_name), col(Event.event_time), col(Event.received_at),
            col(Event.event_id), col(Event.flags), col(Event.delivery_status), col(Event.first_attempt_at),
            col(Event.order_ref), col(Event.purchase_key))


@dataclass
class PurchaseIndex:
    """Purchases already counted (ledger order), to recognise one order counted twice.

    A Purchase is *double* when an earlier Purchase of the pixel is the same order under another
    event_id (or without one), so Meta, which deduplicates only by event_id, counts both:
    ``"order"`` when both carry the same ``custom_data.order_id``; ``"key"`` when they carry the same
    ``purchase_key`` (hashed user, value, currency) within ``PURCHASE_COLLISION`` and no order id
    tells them apart. A copy under an event_id already seen is a repeat (``duplicate_event_ids``),
    which Meta drops, not a double.
    """

    by_order: dict[tuple[str, str], set[str | None]] = field(default_factory=dict)
    by_key: dict[tuple[str, str], list[tuple[datetime, str | None, str | None]]] = field(
        default_factory=dict)

    def add(self, pixel_id: str, event_id: str | None, order_ref: str | None, purchase_key: str | None,
            event_time: datetime) -> None:
        if order_ref is not None:
            self.by_order.setdefault((pixel_id, order_ref), set()).add(event_id)
        if purchase_key is not None:
            self.by_key.setdefault((pixel_id, purchase_key), []).append((_utc(event_time), order_ref, event_id))

    def classify(self, row: Mapping[str, Any]) -> str | None:
        """"order", "key" or None for a Purchase not yet added (see the class docstring)."""
        pixel_id, event_id, order_ref = row["pixel_id"], row.get("event_id"), row.get("order_ref")
        if order_ref is not None:
            ids = self.by_order.get((pixel_id, order_ref))
            if ids:
                return None if event_id is not None and event_id in ids else "order"
        key = row.get("purchase_key")
        if key is None:
            return None
        event_time = _utc(row["event_time"])
        matches = [other_id for at, ref, other_id in self.by_key.get((pixel_id, key), ())
                   if abs(at - event_time) <= PURCHASE_COLLISION
                   and (ref is None or order_ref is None or ref == order_ref)]
        if not matches:
            return None
        return None if event_id is not None and event_id in matches else "key"

    def count(self, row: Mapping[str, Any]) -> str | None:
        """Classify one Purchase row, then remember it."""
        double = self.classify(row)
        self.add(row["pixel_id"], row.get("event_id"), row.get("order_ref"), row.get("purchase_key"),
                 row["event_time"])
        return double


def count_events(rows: Iterable[Mapping[str, Any]], deltas: RollupDeltas,
                 seen_event_ids: set[tuple[str, str, str]], purchases: PurchaseIndex | None = None) -> None:
    """Add events in ledger order; an event id already seen for (pixel, event name) is a duplicate,
    a Purchase that repeats an earlier order under another event id a double (``PurchaseIndex``)."""
    purchases = PurchaseIndex() if purchases is None else purchases
    for row in rows:
        duplicate = False
        if row.get("event_id") is not None:
            ref = (row["pixel_id"], row["event_name"], row["event_id"])
            duplicate = ref in seen_event_ids
            seen_event_ids.add(ref)
        double = purchases.count(row) if row["event_name"] == PURCHASE else None
        deltas.add_event(row, duplicate=duplicate, double=double)


def rebuild_rollups(session: Session, pixel_id: str | None = None) -> None:
    """Recompute every rollup (of one pixel, or all) from events, deliveries and orders.

    For repair, and as the oracle of the incremental path: both must give the same rows.
    """
    for model in (EventHourRollup, DeliveryHourRollup, OrderHourRollup, ArrivalHourRollup,
                  PayloadHourRollup):
        stmt = delete(model)
        session.execute(stmt if pixel_id is None else stmt.where(col(model.pixel_id) == pixel_id))
    deltas = RollupDeltas()
    events = select(*event_rollup_columns()).order_by(col(Event.id))
    deliveries = select(Delivery).order_by(col(Delivery.id))
    orders = select(Order).order_by(col(Order.id))
    if pixel_id is not None:
        events = events.where(col(Event.pixel_id) == pixel_id)
        deliveries = deliveries.where(col(Delivery.pixel_id) == pixel_id)
        orders = orders.where(col(Order.pixel_id) == pixel_id)
    rows = (by_name(row) for row in session.execute(events.execution_options(yield_per=5000)))
    count_events(rows, deltas, set(), PurchaseIndex())
    for attempt in session.scalars(deliveries):
        deltas.add_delivery(pixel_id=attempt.pixel_id, attempted_at=attempt.attempted_at,
                            status=attempt.status, events_sent=attempt.events_sent,
                            events_received=attempt.events_received, error_code=attempt.error_code,
                            error_subcode=attempt.error_subcode, retry_number=attempt.retry_number)
    for order in session.scalars(orders):
        deltas.add_order(pixel_id=order.pixel_id, created_at=order.created_at, value=order.value,
                         matched=order.matched)
    apply_deltas(session, deltas)
