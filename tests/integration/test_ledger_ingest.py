"""Importing events and orders: PII hashed at the door, bad lines reported, idempotent, orders matched."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, func, select
from sqlmodel import Session

from tests.fixtures.db import PIXEL, delivered, event_line, sha, write_jsonl
from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl
from tools.ledger.models import Delivery, DeliveryEvent, Event, Order, Pixel
from tools.ledger.store import purge_payloads

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CANARY_EMAIL = "Canary.Person+ledger@Example.com"
CANARY_PHONE = "(650) 555-0199"
CANARY_NAME = "Zebulonia"


def _dump_text(engine: Engine) -> str:
    """Every value of every column of every table, as text."""
    metadata = MetaData()
    metadata.reflect(engine)
    chunks: list[str] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


def test_raw_pii_is_hashed_before_storage_and_never_logged(
        ledger_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw_user = {"em": CANARY_EMAIL, "ph": [CANARY_PHONE], "fn": CANARY_NAME,
                "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                "fbc": "fb.1.1763632000.AbCd"}  # seconds, not ms: malformed
    path = write_jsonl(tmp_path / "events.jsonl", [
        event_line(event_time=T0, user_data=raw_user, delivery=delivered(T0 + timedelta(seconds=5))),
        event_line(event_time=T0, event_id="ev-2"),
    ])
    caplog.set_level(logging.DEBUG)
    report = ingest_events_jsonl(session_or_engine=ledger_engine, path=path)

    assert (report.lines, report.loaded, report.duplicates, report.skipped) == (2, 2, 0, [])
    assert report.pixels == {PIXEL}
    assert report.raw_pii_hashed == {"em": 1, "ph": 1, "fn": 1}
    dump = _dump_text(ledger_engine) + caplog.text
    for canary in (CANARY_EMAIL, CANARY_EMAIL.lower(), "canary.person", "555-0199", "6505550199",
                   CANARY_NAME, CANARY_NAME.lower()):
        assert canary not in dump
    with Session(ledger_engine) as session:
        event = session.scalars(select(Event).where(Event.event_id == "ev-1")).one()
        assert event.payload is not None
        assert event.payload["user_data"]["em"] == sha(CANARY_EMAIL.lower())
        assert event.payload["user_data"]["fbc"] == "fb.1.1763632000.AbCd"  # observe: kept as sent
        assert set(event.flags["raw"]) == {"em", "ph", "fn"}
        assert event.flags["malformed"] == ["fbc"]
        assert event.delivery_status == "delivered"
        assert session.get(Pixel, PIXEL) is not None  # seen in data: a pixel with defaults


def test_sqlite_file_never_holds_raw_pii(sqlite_url: str, tmp_path: Path) -> None:
    from tools.ledger.db import make_engine, migrate

    engine = make_engine(sqlite_url)
    migrate(engine)
    path = write_jsonl(tmp_path / "e.jsonl", [event_line(event_time=T0, user_data={"em": CANARY_EMAIL})])
    ingest_events_jsonl(session_or_engine=engine, path=path)
    engine.dispose()
    db_file = Path(sqlite_url.removeprefix("sqlite:///"))
    blob = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    assert b"canary.person" not in blob.lower()


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(
        ledger_engine: Engine, tmp_path: Path) -> None:
    good = event_line(event_time=T0)
    no_name = event_line(event_time=T0, event_id="x")
    del no_name["event"]["event_name"]
    bad_time = event_line(event_time=T0, event_id="y")
    bad_time["event"]["event_time"] = "yesterday"
    bad_delivery = event_line(event_time=T0, event_id="z", delivery={"status": "sent"})
    no_pixel = event_line(event_time=T0, event_id="w")
    del no_pixel["pixel_id"]
    path = write_jsonl(tmp_path / "events.jsonl", [
        good, "{not json", "[1, 2]", no_name, bad_time, bad_delivery, no_pixel, "",
        {"pixel_id": PIXEL, "event": {"event_name": "Lead", "event_time": 1, "user_data": "x@y.z"}},
    ])
    report = ingest_events_jsonl(session_or_engine=ledger_engine, path=path)
    assert report.loaded == 1
    assert [line for line, _ in report.skipped] == [2, 3, 4, 5, 6, 7, 9]
    reasons = dict(report.skipped)
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "line is not a JSON object"
    assert reasons[4] == "missing event.event_name"
    assert reasons[5] == "event.event_time must be an integer"
    assert reasons[6] == "delivery.status must be delivered, failed or pending"
    assert reasons[7] == "missing pixel_id"
    assert reasons[9] == "event.user_data must be an object"
    assert "x@y.z" not in " ".join(reasons.values())


def test_the_same_file_twice_adds_nothing(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = [event_line(event_time=T0 + timedelta(minutes=i), event_id=f"ev-{i}",
                        delivery=delivered(T0 + timedelta(minutes=i, seconds=3))) for i in range(30)]
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    first = ingest_events_jsonl(session_or_engine=ledger_engine, path=path, batch_size=7)
    second = ingest_events_jsonl(session_or_engine=ledger_engine, path=path, batch_size=7)
    assert (first.loaded, first.duplicates) == (30, 0)
    assert (second.loaded, second.duplicates) == (0, 30)
    with Session(ledger_engine) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 30
        assert session.scalar(select(func.count()).select_from(DeliveryEvent)) == 30
        assert session.scalar(select(func.sum(Delivery.events_sent))) == 30


def test_lines_of_one_request_form_one_delivery(ledger_engine: Engine, tmp_path: Path) -> None:
    failed = {"status": "failed", "attempted_at": "2026-11-20T10:05:00Z", "http_status": 400,
              "error_code": 190, "error_subcode": 463, "fbtrace_id": "T1", "events_received": 0}
    path = write_jsonl(tmp_path / "events.jsonl", [
        event_line(event_time=T0, event_id=f"ev-{i}", delivery=failed) for i in range(3)])
    ingest_events_jsonl(session_or_engine=ledger_engine, path=path)
    with Session(ledger_engine) as session:
        attempt = session.scalars(select(Delivery)).one()
        assert (attempt.events_sent, attempt.events_received, attempt.error_code) == (3, 0, 190)
        assert {e.delivery_status for e in session.scalars(select(Event))} == {"failed"}


@pytest.mark.parametrize("orders_first", [True, False])
def test_orders_match_server_purchases_in_either_arrival_order(
        ledger_engine: Engine, tmp_path: Path, orders_first: bool) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [
        event_line(event_time=T0, event_id="ord-1"),
        event_line(event_time=T0, event_id="evt-xyz", custom_data={"order_id": "ord-2", "value": 5}),
        event_line(event_time=T0, event_id="ord-3", name="AddToCart"),  # not a Purchase
    ])
    orders = write_jsonl(tmp_path / "orders.jsonl", [
        {"order_id": f"ord-{i}", "pixel_id": PIXEL, "created_at": "2026-11-20T10:00:01Z", "value": 10,
         "currency": "USD"} for i in range(1, 5)] + [{"order_id": "ord-9", "pixel_id": PIXEL}])
    steps = [(ingest_orders_jsonl, orders), (ingest_events_jsonl, events)]
    reports = [load(session_or_engine=ledger_engine, path=p) for load, p in
               (steps if orders_first else steps[::-1])]
    order_report = reports[0] if orders_first else reports[1]
    assert order_report.loaded == 4
    assert order_report.skipped == [(5, "missing created_at")]
    with Session(ledger_engine) as session:
        matched = {o.order_id: o.matched for o in session.scalars(select(Order))}
    assert matched == {"ord-1": True, "ord-2": True, "ord-3": False, "ord-4": False}


def test_purge_drops_old_payloads_only(ledger_engine: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [
        event_line(event_time=T0 - timedelta(days=10), event_id="old"),
        event_line(event_time=T0, event_id="new")])
    ingest_events_jsonl(session_or_engine=ledger_engine, path=path)
    with Session(ledger_engine) as session:
        assert purge_payloads(session, older_than=T0 - timedelta(days=8)) == 1
        session.commit()
        payloads = {e.event_id: e.payload for e in session.scalars(select(Event))}
        assert purge_payloads(session, older_than=T0 - timedelta(days=8)) == 0
    assert payloads["old"] is None
    assert payloads["new"] is not None and payloads["new"]["event_id"] == "new"
    with Session(ledger_engine) as session:  # default retention: 8 days before now
        assert purge_payloads(session, now=T0 + timedelta(days=8, minutes=1)) == 1
        assert purge_payloads(session, now=T0 + timedelta(days=8, minutes=1)) == 0


def test_relay_records_refuse_events_without_name_or_time(ledger_engine: Engine) -> None:
    from tools.ledger.store import record_events

    with Session(ledger_engine) as session:
        with pytest.raises(ValueError, match="event 1 needs"):
            record_events(session, pixel_id=PIXEL, received_at=T0, events=[
                {"event_name": "Lead", "event_time": 1763632800}, {"event_name": "Lead"}])
        assert session.scalar(select(func.count()).select_from(Event)) == 0
