"""What an audit reads from the ledger: hourly rollups only, so its cost does not grow with the
number of raw events. Builds the typed series of ``tools.checks.types``.

Snapshot, audit and incident storage live in ``snapshots.py`` and ``incidents.py``; they are
re-exported here so that an audit imports one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, exists, select
from sqlalchemy.orm import Session

from tools.checks.types import LAG_BUCKET_EDGES, ArrivalHour, DeliveryHour, EventHour, OrderHour
from tools.ledger.incidents import open_incidents, save_audit, upsert_incidents
from tools.ledger.models import ArrivalHourRollup, DeliveryHourRollup, EventHourRollup, OrderHourRollup
from tools.ledger.snapshots import (
    load_meta_counts,
    load_quality_history,
    save_meta_counts,
    save_quality_snapshot,
    save_snapshot,
)
from tools.timeutil import as_utc

if TYPE_CHECKING:
    from tools.checks.relay_refusals import RelayRefusalCount

__all__ = [
    "LedgerInputs",
    "delivery_hour_from_row",
    "event_hour_from_row",
    "load_ledger_inputs",
    "load_meta_counts",
    "load_quality_history",
    "open_incidents",
    "save_audit",
    "save_meta_counts",
    "save_quality_snapshot",
    "save_snapshot",
    "upsert_incidents",
]


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
    return {key: count for key, count in counts.items() if count} if counts else {}


def event_hour_from_row(row: EventHourRollup | Row[Any]) -> EventHour:
    """One ``event_hours`` row as the checks' ``EventHour``."""
    detail = row.detail or {}
    top_n = detail.get("top_n") or {}
    top_share = {name: max(summary.values()) / top_n[name]
                 for name, summary in (detail.get("top") or {}).items() if summary and top_n.get(name)}
    lag = list(detail.get("lag") or ())
    lag += [0] * (len(LAG_BUCKET_EDGES) + 1 - len(lag))
    return EventHour(
        hour=as_utc(row.hour), event_name=row.event_name, events=row.events,
        with_event_id=row.with_event_id, key_counts=_counts(detail, "keys"),
        raw_pii=_counts(detail, "raw"), placeholder=_counts(detail, "placeholder"),
        uppercase_hex=_counts(detail, "uppercase_hex"), not_sha256=_counts(detail, "not_sha256"),
        must_not_hash=_counts(detail, "must_not_hash"), malformed=_counts(detail, "malformed"),
        top_value_share=top_share, duplicate_event_ids=row.duplicate_event_ids,
        double_order_ids=row.double_order_ids, double_purchase_keys=row.double_purchase_keys,
        lag_buckets=tuple(lag), too_old=row.too_old, future_time=row.future_time,
        undelivered=row.undelivered,
    )


def delivery_hour_from_row(row: DeliveryHourRollup | Row[Any]) -> DeliveryHour:
    return DeliveryHour(
        hour=as_utc(row.hour), attempts=row.attempts, events_sent=row.events_sent,
        events_received=row.events_received, failed_attempts=row.failed_attempts,
        retried_attempts=row.retried_attempts, errors={k: int(v) for k, v in (row.errors or {}).items()},
        transport_errors=row.transport_errors,
    )


def load_ledger_inputs(session: Session, *, pixel_id: str, history_start: datetime,
                       window_end: datetime) -> LedgerInputs:
    """Rollups of one pixel for hours in [history_start, window_end), ordered by hour (and name)."""
    start, end = as_utc(history_start), as_utc(window_end)
    # Plain rows, not ORM objects: this runs for every pixel every hour over ~4 weeks of rollups.
    events = session.execute(select(*EventHourRollup.__table__.c).where(
        EventHourRollup.pixel_id == pixel_id, EventHourRollup.hour >= start, EventHourRollup.hour < end)
        .order_by(EventHourRollup.hour, EventHourRollup.event_name))
    deliveries = session.execute(select(*DeliveryHourRollup.__table__.c).where(
        DeliveryHourRollup.pixel_id == pixel_id, DeliveryHourRollup.hour >= start,
        DeliveryHourRollup.hour < end).order_by(DeliveryHourRollup.hour))
    orders = session.execute(select(*OrderHourRollup.__table__.c).where(
        OrderHourRollup.pixel_id == pixel_id, OrderHourRollup.hour >= start, OrderHourRollup.hour < end)
        .order_by(OrderHourRollup.hour))
    has_orders = session.scalar(select(exists().where(OrderHourRollup.pixel_id == pixel_id,
                                                      OrderHourRollup.hour < end)))
    arrivals = session.execute(select(ArrivalHourRollup.hour, ArrivalHourRollup.events,
                                      ArrivalHourRollup.offsets).where(
        ArrivalHourRollup.pixel_id == pixel_id, ArrivalHourRollup.hour >= max(start, end - ARRIVAL_DAYS),
        ArrivalHourRollup.hour < end).order_by(ArrivalHourRollup.hour))
    return LedgerInputs(
        event_hours=tuple(event_hour_from_row(row) for row in events),
        delivery_hours=tuple(delivery_hour_from_row(row) for row in deliveries),
        order_hours=tuple(OrderHour(hour=as_utc(row.hour), orders=row.orders, matched=row.matched,
                                    value=row.value) for row in orders),
        has_orders=bool(has_orders),
        arrival_hours=tuple(ArrivalHour(hour=as_utc(row.hour), events=row.events,
                                        offsets=tuple(row.offsets or ())) for row in arrivals),
    )


def load_relay_refusals(session: Session, *, pixel_id: str, start: datetime,
                        end: datetime) -> tuple[RelayRefusalCount, ...]:
    """Requests the relay refused for the pixel in hours [start, end), by sender and reason."""
    from tools.checks.relay_refusals import RelayRefusalCount
    from tools.ledger.models import RelayRefusal

    rows = session.execute(select(RelayRefusal.hour, RelayRefusal.source, RelayRefusal.reason,
                                  RelayRefusal.requests, RelayRefusal.events).where(
        RelayRefusal.pixel_id == pixel_id, RelayRefusal.hour >= as_utc(start), RelayRefusal.hour < as_utc(end))
        .order_by(RelayRefusal.hour, RelayRefusal.source, RelayRefusal.reason))
    return tuple(RelayRefusalCount(hour=as_utc(row.hour), source=row.source, reason=row.reason,
                                   requests=row.requests, events=row.events) for row in rows)
