"""What an audit reads from the ledger: hourly rollups only, so its cost does not grow with the
number of raw events. Builds the typed series of ``tools.checks.types``.

Snapshot, audit and incident storage live in ``snapshots.py`` and ``incidents.py``; they are
re-exported here so that an audit imports one module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Row, Text, cast, exists, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import LAG_BUCKET_EDGES, ArrivalHour, DeliveryHour, EventHour, OrderHour
from tools.ledger.incidents import open_incidents, save_audit, upsert_incidents
from tools.ledger.models import ArrivalHourRollup, DeliveryHourRollup, EventHourRollup, OrderHourRollup, table_of
from tools.ledger.snapshots import (
    load_meta_counts,
    load_quality_history,
    save_meta_counts,
    save_quality_snapshot,
    save_snapshot,
)
from tools.timeutil import as_utc

if TYPE_CHECKING:
    from tools.checks.payload_quality import PayloadHour
    from tools.checks.relay_refusals import RelayRefusalCount

__all__ = [
    "LedgerInputs",
    "delivery_hour_from_row",
    "event_hour_from_row",
    "load_ledger_inputs",
    "load_meta_counts",
    "load_payload_inputs",
    "load_quality_history",
    "open_incidents",
    "save_audit",
    "save_meta_counts",
    "save_quality_snapshot",
    "save_snapshot",
    "upsert_incidents",
]


T = TypeVar("T")

# Arrivals are read for the last week only: the clock check compares an hour with the recent usual.
ARRIVAL_DAYS = timedelta(days=8)


@dataclass(frozen=True)
class LedgerInputs:
    event_hours: tuple[EventHour, ...]
    delivery_hours: tuple[DeliveryHour, ...]
    order_hours: tuple[OrderHour, ...]
    # The shop sends its orders for this pixel (some order was ever recorded before window_end).
    has_orders: bool
    arrival_hours: tuple[ArrivalHour, ...] = ()


def _counts(detail: dict[str, Any], name: str) -> dict[str, int]:
    counts = detail.get(name)
    if not counts:
        return {}
    # A freshly decoded map with no zero in it is kept as it is (the common case: no copy).
    return counts if all(counts.values()) else {key: count for key, count in counts.items() if count}


# EventHour field <- key of the rollup's detail, for the per-field counters.
_COUNT_FIELDS = (("key_counts", "keys"), ("raw_pii", "raw"), ("placeholder", "placeholder"),
                 ("uppercase_hex", "uppercase_hex"), ("not_sha256", "not_sha256"),
                 ("must_not_hash", "must_not_hash"), ("malformed", "malformed"))
_EVENT_HOUR_FIELDS = ("hour", "event_name", "events", "with_event_id", "top_value_share", "duplicate_event_ids",
                      "double_order_ids", "double_purchase_keys", "lag_buckets", "too_old", "future_time",
                      "undelivered", *(name for name, _ in _COUNT_FIELDS))
_DELIVERY_HOUR_FIELDS = ("hour", "attempts", "events_sent", "events_received", "failed_attempts",
                         "retried_attempts", "errors", "transport_errors")


def _build(cls: type[T], names: tuple[str, ...]) -> Callable[[dict[str, Any]], T]:
    """A constructor of the frozen dataclass ``cls`` from a map of exactly the fields ``names``. A frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``: ~10 us for an EventHour,
    which was most of an audit's ledger read over 4 weeks of rollups. The instance's ``__dict__`` is
    filled directly instead (same fields, equal objects). A class that validates in ``__post_init__``,
    uses slots, or whose fields are not exactly ``names`` (a field added since) keeps its ``__init__``."""
    if (hasattr(cls, "__post_init__") or hasattr(cls, "__slots__")
            or {f.name for f in dataclasses.fields(cls)} != set(names)):  # type: ignore[arg-type]
        return lambda fields: cls(**fields)
    new = object.__new__

    def build(fields: dict[str, Any]) -> T:
        obj = new(cls)
        obj.__dict__.update(fields)
        return obj
    return build


_LAG_LENGTH = len(LAG_BUCKET_EDGES) + 1


def _event_hour(hour: datetime, event_name: str, events: int, with_event_id: int, duplicate_event_ids: int,
                double_order_ids: int, double_purchase_keys: int, too_old: int, future_time: int,
                undelivered: int, detail: dict[str, Any] | None,
                build: Callable[[dict[str, Any]], EventHour]) -> EventHour:
    detail = detail or {}
    top_n = detail.get("top_n") or {}
    top = detail.get("top")
    top_share = {name: max(summary.values()) / top_n[name]
                 for name, summary in top.items() if summary and top_n.get(name)} if top else {}
    lag = detail.get("lag")
    if lag is None or len(lag) != _LAG_LENGTH:
        lag = list(lag or ())
        lag += [0] * (_LAG_LENGTH - len(lag))
    fields: dict[str, Any] = {
        "hour": hour, "event_name": event_name, "events": events, "with_event_id": with_event_id,
        "top_value_share": top_share, "duplicate_event_ids": duplicate_event_ids,
        "double_order_ids": double_order_ids, "double_purchase_keys": double_purchase_keys,
        "lag_buckets": tuple(lag), "too_old": too_old, "future_time": future_time, "undelivered": undelivered,
    }
    for field_name, key in _COUNT_FIELDS:
        counts = detail.get(key)
        fields[field_name] = (counts if counts and all(counts.values())
                              else _counts(detail, key) if counts else {})
    return build(fields)


def event_hour_from_row(row: EventHourRollup | Row[Any]) -> EventHour:
    """One ``event_hours`` row as the checks' ``EventHour``."""
    return _event_hour(as_utc(row.hour), row.event_name, row.events, row.with_event_id,
                       row.duplicate_event_ids, row.double_order_ids, row.double_purchase_keys,
                       row.too_old, row.future_time, row.undelivered, row.detail,
                       _build(EventHour, _EVENT_HOUR_FIELDS))


def delivery_hour_from_row(row: DeliveryHourRollup | Row[Any]) -> DeliveryHour:
    return DeliveryHour(
        hour=as_utc(row.hour), attempts=row.attempts, events_sent=row.events_sent,
        events_received=row.events_received, failed_attempts=row.failed_attempts,
        retried_attempts=row.retried_attempts, errors={k: int(v) for k, v in (row.errors or {}).items()},
        transport_errors=row.transport_errors,
    )


def _json_loader(session: Session) -> Callable[[str], Any]:
    """The engine's own JSON decoder (orjson with ``make_engine``), for JSON columns read as text."""
    return getattr(session.get_bind().dialect, "_json_deserializer", None) or json.loads


def load_ledger_inputs(session: Session, *, pixel_id: str, history_start: datetime,
                       window_end: datetime) -> LedgerInputs:
    """Rollups of one pixel for hours in [history_start, window_end), ordered by hour (and name)."""
    start, end = as_utc(history_start), as_utc(window_end)
    # This runs for every pixel every hour over ~4 weeks of rollups (up to a few thousand rows), so
    # it reads plain tuples, decodes the JSON detail itself (as text: the driver's and SQLAlchemy's
    # per-row JSON processing cost more than the decoding) and converts each distinct hour once.
    loads = _json_loader(session)
    utc: dict[Any, datetime] = {}

    def hour_of(value: Any) -> datetime:
        hour = utc.get(value)
        if hour is None:
            hour = utc[value] = as_utc(value)
        return hour

    table = table_of(EventHourRollup).c
    connection = session.connection()  # Core rows: the ORM's result layer adds nothing to plain columns
    events = connection.execute(select(
        table.hour, table.event_name, table.events, table.with_event_id, table.duplicate_event_ids,
        table.double_order_ids, table.double_purchase_keys, table.too_old, table.future_time,
        table.undelivered, cast(table.detail, Text)).where(
        table.pixel_id == pixel_id, table.hour >= start, table.hour < end)
        .order_by(table.hour, table.event_name)).all()
    build = _build(EventHour, _EVENT_HOUR_FIELDS)
    event_hours = tuple(
        _event_hour(hour_of(hour), name, n, with_id, dup_ids, dbl_orders, dbl_keys, too_old, future,
                    undelivered, loads(detail) if detail else None, build)
        for hour, name, n, with_id, dup_ids, dbl_orders, dbl_keys, too_old, future, undelivered, detail
        in events)
    deliveries = connection.execute(select(*table_of(DeliveryHourRollup).c).where(
        col(DeliveryHourRollup.pixel_id) == pixel_id, col(DeliveryHourRollup.hour) >= start,
        col(DeliveryHourRollup.hour) < end).order_by(col(DeliveryHourRollup.hour)))
    orders = connection.execute(select(*table_of(OrderHourRollup).c).where(
        col(OrderHourRollup.pixel_id) == pixel_id, col(OrderHourRollup.hour) >= start, col(OrderHourRollup.hour) < end)
        .order_by(col(OrderHourRollup.hour)))
    has_orders = connection.scalar(select(exists().where(col(OrderHourRollup.pixel_id) == pixel_id,
                                                      col(OrderHourRollup.hour) < end)))
    arrivals = connection.execute(select(col(ArrivalHourRollup.hour), col(ArrivalHourRollup.events),
                                      col(ArrivalHourRollup.offsets)).where(
        col(ArrivalHourRollup.pixel_id) == pixel_id, col(ArrivalHourRollup.hour) >= max(start, end - ARRIVAL_DAYS),
        col(ArrivalHourRollup.hour) < end).order_by(col(ArrivalHourRollup.hour)))
    delivery = _build(DeliveryHour, _DELIVERY_HOUR_FIELDS)
    order = _build(OrderHour, ("hour", "orders", "matched", "value"))
    arrival = _build(ArrivalHour, ("hour", "events", "offsets"))
    return LedgerInputs(
        event_hours=event_hours,
        delivery_hours=tuple(delivery({
            "hour": hour_of(row.hour), "attempts": row.attempts, "events_sent": row.events_sent,
            "events_received": row.events_received, "failed_attempts": row.failed_attempts,
            "retried_attempts": row.retried_attempts, "errors": {k: int(v) for k, v in (row.errors or {}).items()},
            "transport_errors": row.transport_errors}) for row in deliveries),
        order_hours=tuple(order({"hour": hour_of(row.hour), "orders": row.orders, "matched": row.matched,
                                 "value": row.value}) for row in orders),
        has_orders=bool(has_orders),
        arrival_hours=tuple(arrival({"hour": hour_of(row.hour), "events": row.events,
                                     "offsets": tuple(row.offsets or ())}) for row in arrivals),
    )


def load_relay_refusals(session: Session, *, pixel_id: str, start: datetime,
                        end: datetime) -> tuple[RelayRefusalCount, ...]:
    """Requests the relay refused for the pixel in hours [start, end), by sender and reason."""
    from tools.checks.relay_refusals import RelayRefusalCount
    from tools.ledger.models import RelayRefusal

    rows = session.execute(select(col(RelayRefusal.hour), col(RelayRefusal.source), col(RelayRefusal.reason),
                                  col(RelayRefusal.requests), col(RelayRefusal.events)).where(
        col(RelayRefusal.pixel_id) == pixel_id, col(RelayRefusal.hour) >= as_utc(start),
        col(RelayRefusal.hour) < as_utc(end))
        .order_by(col(RelayRefusal.hour), col(RelayRefusal.source), col(RelayRefusal.reason)))
    return tuple(RelayRefusalCount(hour=as_utc(row.hour), source=row.source, reason=row.reason,
                                   requests=row.requests, events=row.events) for row in rows)


def load_payload_inputs(session: Session, *, pixel_id: str, window_end: datetime) -> tuple[PayloadHour, ...]:
    """``tools.ledger.payload.load_payload_hours`` for an audit: the same PayloadHours (8 days before
    ``window_end``, by hour and name), read as plain tuples with the JSON detail decoded from text and
    each PayloadHour built without the frozen dataclass's ``__init__`` (see ``_build``): a thousand rows
    a pixel every hour, where the ORM's per-row JSON processing and ``__init__`` were most of the cost."""
    from tools.checks.payload_quality import PayloadHour
    from tools.ledger.models import PayloadHourRollup
    from tools.ledger.payload import PAYLOAD_DAYS

    end = as_utc(window_end)
    table = table_of(PayloadHourRollup).c
    rows = session.connection().execute(select(table.hour, table.event_name, table.events, cast(table.detail, Text))
                                        .where(table.pixel_id == pixel_id, table.hour >= end - PAYLOAD_DAYS,
                                               table.hour < end)
                                        .order_by(table.hour, table.event_name)).all()
    loads = _json_loader(session)
    build = _build(PayloadHour, _PAYLOAD_HOUR_FIELDS)
    utc: dict[Any, datetime] = {}
    out = []
    for hour, name, events, text in rows:
        when = utc.get(hour)
        if when is None:
            when = utc[hour] = as_utc(hour)
        detail = (loads(text) if text else None) or {}
        # Field by field as ``payload_hour_from_row`` builds them (copies, so no two share a dict).
        examples = detail.get("examples")
        out.append(build({
            "hour": when, "event_name": name, "events": events, "issues": dict(detail.get("issues") or {}),
            "examples": {k: tuple(v) for k, v in examples.items()} if examples else {},
            "counts": dict(detail.get("n") or {}), "ip_top": dict(detail.get("ip") or {}),
            "id_shapes": dict(detail.get("id_shapes") or {}),
            "user_bits": int(detail.get("user_bits") or "0", 16)}))
    return tuple(out)


_PAYLOAD_HOUR_FIELDS = ("hour", "event_name", "events", "issues", "examples", "counts", "ip_top", "id_shapes",
                        "user_bits")

