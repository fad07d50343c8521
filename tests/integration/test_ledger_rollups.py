"""Hourly rollups: incremental maintenance equals a rebuild from raw rows, and the audit inputs
built from them carry the right numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from tests.fixtures.db import PIXEL, delivered, event_line, sha, write_jsonl
from tools.checks.types import LAG_BUCKET_EDGES
from tools.ledger.deliveries import record_delivery
from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl
from tools.ledger.inputs import load_ledger_inputs
from tools.ledger.models import (
    ArrivalHourRollup,
    Delivery,
    DeliveryHourRollup,
    Event,
    EventHourRollup,
    OrderHourRollup,
    PayloadHourRollup,
)
from tools.ledger.rollups import TOP_K, merge_top, rebuild_rollups
from tools.ledger.store import DeliveryOutcome, record_events
from tools.timeutil import as_utc, to_iso

H = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PLACEHOLDER = sha("")


def _user(index: int) -> dict[str, Any]:
    user: dict[str, Any] = {"client_ip_address": "203.0.113.9", "client_user_agent": "UA",
                            "fbp": "fb.1.1763600000000.1"}
    if index % 2 == 0:
        user["em"] = [sha(f"user{index % 6}@example.com")]
    if index % 5 == 0:
        user["ph"] = sha("16505550100").upper()
    if index % 7 == 0:
        user["em"] = PLACEHOLDER
    if index % 11 == 0:
        user["fbc"] = "fb.1.1763632000.AbCd"
    return user


def _lines() -> list[dict[str, Any]]:
    lines = []
    for i in range(60):
        event_time = H + timedelta(minutes=7 * i)
        name = ("Purchase", "AddToCart", "PageView")[i % 3]
        delivery: dict[str, Any] | None = delivered(event_time + timedelta(seconds=30 * i))
        if i % 9 == 0:
            delivery = {"status": "failed", "attempted_at": to_iso(event_time + timedelta(minutes=2)),
                        "http_status": 400, "error_code": 100, "error_subcode": 2804001,
                        "fbtrace_id": f"F{i}", "events_received": 0}
        elif i % 13 == 0:
            delivery = None
        elif i % 17 == 0:
            delivery = {"status": "pending", "attempted_at": to_iso(event_time + timedelta(hours=2)),
                        "http_status": 503}
        lines.append(event_line(event_time=event_time, name=name, event_id=f"ev-{i % 50}",
                                user_data=_user(i), delivery=delivery,
                                received_at=event_time + timedelta(seconds=2)))
    # Dated 10 minutes after it was received (clock skew) and one received 8 days late.
    lines.append(event_line(event_time=H + timedelta(minutes=10), received_at=H, event_id="skew"))
    lines.append(event_line(event_time=H - timedelta(days=8), received_at=H, event_id="late",
                            delivery=delivered(H + timedelta(seconds=1))))
    return lines


def _rollups(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in (EventHourRollup, DeliveryHourRollup, OrderHourRollup, ArrivalHourRollup, PayloadHourRollup):
        rows = session.scalars(select(model)).all()
        # In the model's field order (a loaded row's model_dump() order may vary): keys first.
        out[model.__tablename__] = sorted(
            tuple(as_utc(v) if isinstance(v, datetime) else v for v in (getattr(row, f) for f in model.model_fields))
            for row in rows)
    return out


def _load(engine: Engine, tmp_path: Path) -> None:
    ingest_events_jsonl(session_or_engine=engine, path=write_jsonl(tmp_path / "e.jsonl", _lines()),
                        batch_size=16)
    orders = [{"order_id": f"ev-{i}", "pixel_id": PIXEL, "created_at": to_iso(H + timedelta(minutes=i)),
               "value": 10.5, "currency": "USD"} for i in range(0, 40, 4)]
    ingest_orders_jsonl(session_or_engine=engine, path=write_jsonl(tmp_path / "o.jsonl", orders))


def test_incremental_rollups_equal_a_rebuild(ledger_engine: Engine, tmp_path: Path) -> None:
    _load(ledger_engine, tmp_path)
    with Session(ledger_engine) as session:
        # The relay path: a fresh event, a failed attempt, then a retry that gets through.
        stored = record_events(session, pixel_id=PIXEL, received_at=H + timedelta(hours=1),
                               events=[{"event_name": "Lead", "event_time": int(H.timestamp()),
                                        "user_data": {"em": "Someone@Example.com"}}])
        pending = session.scalars(select(Event.id).where(Event.delivery_status != "delivered")).all()
        record_delivery(session, pixel_id=PIXEL, event_row_ids=pending, outcome=DeliveryOutcome(
            status="failed", attempted_at=H + timedelta(hours=3), error_code=17, error_subcode=2446079))
        retry_id = record_delivery(session, pixel_id=PIXEL, event_row_ids=pending, outcome=DeliveryOutcome(
            status="delivered", attempted_at=H + timedelta(days=9)), fix_id="fix-1")
        session.commit()
        retry = session.get(Delivery, retry_id)
        assert retry is not None and (retry.fix_id, retry.events_sent) == ("fix-1", len(pending))
        assert retry.retry_number >= 1 and retry.events_received == len(pending)
        assert stored.loaded == 1
        incremental = _rollups(session)
        rebuild_rollups(session)
        session.commit()
        assert _rollups(session) == incremental
        rebuild_rollups(session, pixel_id=PIXEL)
        assert _rollups(session) == incremental
        # Every event counted once; the retry left nothing undelivered.
        assert session.scalar(select(func.sum(EventHourRollup.events))) == 63
        # ... and once by the hour it arrived, with its offset.
        assert session.scalar(select(func.sum(ArrivalHourRollup.events))) == 63
        assert sum(sum(r.offsets) for r in session.scalars(select(ArrivalHourRollup))) == 63
        # ... and once in the payload rollups: the 22 Purchases here carry no custom_data (no currency).
        assert session.scalar(select(func.sum(PayloadHourRollup.events))) == 63
        issues = [r.detail.get("issues", {}) for r in session.scalars(select(PayloadHourRollup))]
        assert sum(i.get("purchase_no_currency", 0) for i in issues) == 22
        assert session.scalar(select(func.sum(EventHourRollup.undelivered))) == 0


def test_inputs_carry_the_numbers_of_the_hour(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = [
        event_line(event_time=H + timedelta(minutes=1), event_id="a", user_data={
            "em": [sha("a@example.com")], "client_user_agent": "UA", "fbp": "fb.1.1763600000000.1"},
            delivery=delivered(H + timedelta(minutes=1, seconds=30))),
        event_line(event_time=H + timedelta(minutes=2), event_id="a", user_data={
            "em": "A@Example.com", "client_user_agent": "UA"},
            delivery=delivered(H + timedelta(minutes=30))),
        event_line(event_time=H + timedelta(minutes=3), event_id=None, user_data={
            "em": PLACEHOLDER, "fbc": "fb.1.1763632000.AbCd", "client_ip_address": sha("1.2.3.4")},
            delivery={"status": "failed", "attempted_at": to_iso(H + timedelta(hours=1, minutes=5)),
                      "http_status": 400, "error_code": 190, "error_subcode": 463}),
        event_line(event_time=H + timedelta(minutes=20), event_id="b", received_at=H,
                   delivery={"status": "failed", "attempted_at": to_iso(H + timedelta(hours=1, minutes=5)),
                             "http_status": 503, "error_code": None, "error_subcode": None}),
    ]
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "e.jsonl", lines))
    orders = [{"order_id": "a", "pixel_id": PIXEL, "created_at": to_iso(H), "value": 20},
              {"order_id": "zz", "pixel_id": PIXEL, "created_at": to_iso(H), "value": 5.5}]
    ingest_orders_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "o.jsonl", orders))
    with Session(ledger_engine) as session:
        inputs = load_ledger_inputs(session, pixel_id=PIXEL, history_start=H - timedelta(weeks=4),
                                    window_end=H + timedelta(hours=2))
        empty = load_ledger_inputs(session, pixel_id="999", history_start=H,
                                   window_end=H + timedelta(hours=2))
    assert empty.event_hours == () and not empty.has_orders
    (hour,) = inputs.event_hours
    assert (hour.hour, hour.event_name, hour.events, hour.with_event_id) == (H, "Purchase", 4, 3)
    assert hour.duplicate_event_ids == 1
    # Placeholder em, malformed fbc and hashed IP do not count as usable keys.
    assert hour.key_counts == {"em": 3, "client_user_agent": 3, "fbp": 2, "client_ip_address": 1}
    assert hour.raw_pii == {"em": 1}
    assert hour.placeholder == {"em": 1}
    assert hour.malformed == {"fbc": 1}
    assert hour.must_not_hash == {"client_ip_address": 1}
    # a@example.com arrives hashed once and raw once: the same hash carries 2 of 4 em values.
    assert hour.top_value_share["em"] == 0.5
    lag = [0] * (len(LAG_BUCKET_EDGES) + 1)
    lag[0] += 1          # 30 s
    lag[3] += 2          # 28 min, and 45 min (counted from event_time, not receipt)
    lag[4] += 1          # 62 min
    assert hour.lag_buckets == tuple(lag)
    assert (hour.too_old, hour.future_time, hour.undelivered) == (0, 1, 2)
    first, second = inputs.delivery_hours
    assert (first.hour, first.attempts, first.events_sent, first.events_received) == (H, 2, 2, 2)
    assert (second.attempts, second.failed_attempts, second.errors, second.transport_errors) == (
        2, 2, {"190/463": 1}, 1)
    (orders_hour,) = inputs.order_hours
    assert (orders_hour.orders, orders_hour.matched, orders_hour.value) == (2, 1, 25.5)
    assert inputs.has_orders


def test_top_value_summary_is_bounded_and_keeps_a_dominant_value() -> None:
    summary: dict[str, int] = {}
    for i in range(1000):
        summary = merge_top(summary, {"dominant" if i % 2 == 0 else f"v{i}": 1})
    assert len(summary) <= TOP_K
    # Misra-Gries under-counts by at most n / (k + 1).
    assert 500 - 1000 / (TOP_K + 1) <= summary["dominant"] <= 500


def test_imported_retries_become_failed_attempts_before_the_final_one(ledger_engine: Engine,
                                                                       tmp_path: Path) -> None:
    """A line whose sender retried after rate limits: each earlier attempt is a failed delivery with
    Meta's code, the last one delivered, and the event's lag runs from its first attempt."""
    final = delivered(H + timedelta(hours=2), attempts=3, retries=[
        {"attempted_at": to_iso(H + timedelta(minutes=5)), "http_status": 400, "error_code": 80004,
         "error_subcode": 2446079},
        {"attempted_at": to_iso(H + timedelta(minutes=35)), "http_status": 400, "error_code": 80004,
         "error_subcode": 2446079}])
    path = write_jsonl(tmp_path / "retries.jsonl",
                       [event_line(event_time=H, event_id=f"r-{n}", delivery=final) for n in range(4)])
    ingest_events_jsonl(session_or_engine=ledger_engine, path=path)
    with Session(ledger_engine) as session:
        deliveries = session.scalars(select(Delivery).order_by(Delivery.attempted_at)).all()
        assert [(d.status, d.error_code, d.retry_number, d.events_sent) for d in deliveries] == [
            ("failed", 80004, 0, 4), ("failed", 80004, 1, 4), ("delivered", None, 2, 4)]
        inputs = load_ledger_inputs(session, pixel_id=PIXEL, history_start=H, window_end=H + timedelta(hours=3))
        by_hour = {d.hour: d for d in inputs.delivery_hours}
        assert by_hour[H].failed_attempts == 2 and by_hour[H].errors == {"80004/2446079": 2}
        assert by_hour[H + timedelta(hours=2)].retried_attempts == 1
        incremental = _rollups(session)
        rebuild_rollups(session)
        assert _rollups(session) == incremental
