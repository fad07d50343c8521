"""Duplicate counters of the rollups: the same event_id again (a repeat) versus the same order under
another event_id (a double count), by order id or by (hashed user, value, minute); kept at ingest
(batch by batch, and through the relay's write path) exactly as a rebuild counts them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from tests.fixtures.db import PIXEL, event_line, sha, write_jsonl
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.inputs import load_ledger_inputs
from tools.ledger.models import Event, EventHourRollup
from tools.ledger.rollups import rebuild_rollups
from tools.ledger.store import record_events
from tools.timeutil import as_utc, to_unix

H = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PLACEHOLDER = sha("")


def _purchase(minute: float, event_id: str | None, *, email: str | None = "x@example.com",
              order_id: str | None = None, value: Any = 10.0, name: str = "Purchase",
              received: float = 0.0) -> dict[str, Any]:
    user: dict[str, Any] = {"client_ip_address": "203.0.113.9", "client_user_agent": "UA"}
    if email is not None:
        # "raw:" values arrive unhashed (the ledger normalizes and hashes them at the door).
        user["em"] = [email.removeprefix("raw:") if email.startswith("raw:") or email == PLACEHOLDER
                      else sha(email)]
    custom: dict[str, Any] = {"currency": "EUR"}
    if value is not None:
        custom["value"] = value
    if order_id is not None:
        custom["order_id"] = order_id
    at = H + timedelta(minutes=minute)
    return event_line(event_time=at, received_at=at + timedelta(seconds=5 + received), name=name,
                      event_id=event_id, user_data=user, custom_data=custom)


LINES = [
    # The same order (order_id) under two event ids: the second is a double.
    _purchase(1, "A", order_id="o-1"),
    _purchase(1.2, "B", order_id="o-1", received=1),
    # The first copy again (same event_id): a repeat Meta drops, not a double.
    _purchase(1, "A", order_id="o-1", received=30),
    # No order id: same hashed user, value and currency 30 s apart under two ids: a double.
    _purchase(20, "C", email="y@example.com", value=20),
    _purchase(20.5, "D", email="raw: Y@Example.com", value="20.00"),  # raw, normalized: the same user
    # ... but five minutes later it is another purchase.
    _purchase(26, "E", email="y@example.com", value=20),
    # Same user, value and minute, different order ids: two orders.
    _purchase(40, "F", email="z@example.com", value=30, order_id="o-2"),
    _purchase(40.1, "G", email="z@example.com", value=30, order_id="o-3"),
    # Placeholder e-mails are no user key; no value, no key either.
    _purchase(50, "H", email=PLACEHOLDER, value=5),
    _purchase(50.1, "I", email=PLACEHOLDER, value=5),
    _purchase(55, "J", email="w@example.com", value=None),
    _purchase(55.1, "K", email="w@example.com", value=None),
    # Not a Purchase: a cart id repeated under several event ids is several adds.
    _purchase(58, "L", order_id="cart-1", name="AddToCart"),
    _purchase(58.2, "M", order_id="cart-1", name="AddToCart"),
    # No event id at all on a second copy of an order: Meta cannot drop it.
    _purchase(59, None, order_id="o-1", received=60),
]


def _rows(session: Session) -> list[tuple[Any, ...]]:
    return sorted((r.event_name, as_utc(r.hour), r.events, r.duplicate_event_ids, r.double_order_ids,
                   r.double_purchase_keys) for r in session.scalars(select(EventHourRollup)))


@pytest.mark.parametrize("batch_size", [1, 4, 5000])
def test_doubles_and_repeats_are_told_apart_and_equal_a_rebuild(ledger_engine: Engine, tmp_path: Path,
                                                                 batch_size: int) -> None:
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "e.jsonl", LINES),
                        batch_size=batch_size)
    with Session(ledger_engine) as session:
        incremental = _rows(session)
        assert incremental == [("AddToCart", H, 2, 0, 0, 0), ("Purchase", H, 13, 1, 2, 1)]
        rebuild_rollups(session)
        assert _rows(session) == incremental
        keys = session.scalars(select(Event.purchase_key).where(Event.event_name == "Purchase")).all()
        assert all(key is None or len(key) == 32 for key in keys)
        assert "y@example.com" not in str(keys) and sha("y@example.com") not in str(keys)


def test_the_relay_path_counts_a_double_against_what_is_stored(ledger_engine: Engine, tmp_path: Path) -> None:
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "e.jsonl", LINES[:1]))
    event = dict(LINES[1]["event"])
    with Session(ledger_engine) as session:
        record_events(session, pixel_id=PIXEL, events=[event], received_at=H + timedelta(minutes=5))
        record_events(session, pixel_id=PIXEL, received_at=H + timedelta(minutes=6), events=[{
            "event_name": "Purchase", "event_time": to_unix(H + timedelta(minutes=2)), "event_id": "Z",
            "user_data": {"em": "X@example.com "}, "custom_data": {"value": 10, "currency": "eur"}}])
        session.commit()
        incremental = _rows(session)
        # B repeats order o-1 of A; Z (no order id) is A's user, value and currency a minute later.
        assert incremental == [("Purchase", H, 3, 0, 1, 1)]
        rebuild_rollups(session)
        assert _rows(session) == incremental
        inputs = load_ledger_inputs(session, pixel_id=PIXEL, history_start=H, window_end=H + timedelta(hours=1))
    (hour,) = inputs.event_hours
    assert (hour.double_order_ids, hour.double_purchase_keys, hour.duplicate_event_ids) == (1, 1, 0)


def _shop(engine: Engine, *, copies_from: datetime | None, new_ids: bool) -> None:
    """Four days of ~12 Purchases an hour, each with its order id; from ``copies_from`` every Purchase
    is sent twice: with its own event_id again (a retry) or with a new one (a second webhook)."""
    with Session(engine) as session:
        hour = H - 4 * 24 * timedelta(hours=1)
        n = 0
        while hour < H:
            events = []
            for i in range(12):
                n += 1
                event = {"event_name": "Purchase", "event_time": to_unix(hour + timedelta(minutes=5 * i)),
                         "event_id": f"p-{n}", "user_data": {"em": sha(f"buyer{n}@example.com")},
                         "custom_data": {"order_id": f"o-{n}", "value": 10 + n % 7, "currency": "EUR"}}
                events.append(event)
                if copies_from is not None and hour >= copies_from:
                    events.append({**event, "event_id": f"q-{n}" if new_ids else f"p-{n}",
                                   "event_time": event["event_time"] + 20})
            record_events(session, pixel_id=PIXEL, events=events, received_at=hour + timedelta(minutes=61))
            hour += timedelta(hours=1)
        session.commit()


def _audit(engine: Engine) -> list[tuple[str, str]]:
    from tools.checks.duplicates import check_duplicates
    from tools.checks.types import AuditInputs

    start = H - timedelta(weeks=4)
    with Session(engine) as session:
        ledger = load_ledger_inputs(session, pixel_id=PIXEL, history_start=start, window_end=H)
    inputs = AuditInputs(pixel_id=PIXEL, window_start=H - timedelta(hours=1), window_end=H, history_start=start,
                         event_hours=ledger.event_hours, delivery_hours=ledger.delivery_hours)
    return sorted((f.code, f.severity) for f in check_duplicates(inputs))


def test_a_second_webhook_is_double_counted_and_a_retry_is_a_repeat(tmp_path: Path) -> None:
    from tools.ledger.db import make_engine, migrate

    for case, (copies_from, new_ids, expected) in enumerate((
        (None, False, []),
        (H - timedelta(hours=1), True, [("duplicates.double_counted", "critical")]),
        (H - timedelta(hours=1), False, [("duplicates.repeated_event_ids", "warning")]),
    )):
        engine = make_engine(f"sqlite:///{tmp_path / f'ledger{case}.db'}")
        migrate(engine)
        _shop(engine, copies_from=copies_from, new_ids=new_ids)
        assert _audit(engine) == expected, (copies_from, new_ids)
        engine.dispose()
