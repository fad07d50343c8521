"""The fast ingest path stores exactly what the straightforward path stores: rows recomputed line by
line from the file, rollups equal to a rebuild, and (SQLite) the very bytes the pre-optimisation code
wrote for the same file."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import sqlite
from sqlmodel import Session

from tests.fixtures.db import PIXEL, sha, write_jsonl
from tools.ledger.bulk import sqlite_datetime
from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl, parse_event_line
from tools.ledger.models import Delivery, DeliveryEvent, Event, EventHourRollup
from tools.ledger.rollups import rebuild_rollups
from tools.meta.userdata import prepare_user_data
from tools.timeutil import as_utc, from_unix, to_iso

NOW = datetime(2026, 11, 21, tzinfo=UTC)
START = datetime(2026, 11, 12, tzinfo=UTC)
OTHER_PIXEL = "555000111"
# sha256 of the tables below as written by the code before the fast path (commit 890ebf1) for
# generated_lines(); a deliberate change of the stored format must update it.
REFERENCE_SQLITE_DIGEST = "e0f6d1e6474ed359efd07c9e412fb90fd06d439fd3ca96e9c9f2a24539cfdd65"
DIGEST_TABLES = ("events", "deliveries", "delivery_events", "orders", "event_hours", "delivery_hours",
                 "order_hours")
# Columns added after that commit (migrations 0006, 0010_order_customer), left out of the digest: the
# bytes of every column the reference knew must not change.
ADDED_COLUMNS = {"events": {"purchase_key"}, "event_hours": {"double_order_ids", "double_purchase_keys"},
                 "orders": {"user_data"}}
# Keys added to a JSON column later (migration 0009: flags["payload"], appended last), left out too.
ADDED_JSON_KEYS = {("events", "flags"): "payload"}


def _without_added_key(table: str, column: str, value: Any) -> Any:
    key = ADDED_JSON_KEYS.get((table, column))
    if key is None or not isinstance(value, str) or f'"{key}":' not in value:
        return value
    document = json.loads(value)
    document.pop(key, None)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _user(rng: random.Random, index: int) -> dict[str, Any]:
    user: dict[str, Any] = {"client_ip_address": f"203.0.113.{rng.randint(1, 254)}",
                            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                            "fbp": f"fb.1.1763600000000.{rng.randint(10**8, 10**9)}"}
    kind = index % 10
    if kind < 5:
        user["em"] = [sha(f"shopper{rng.randint(0, 40)}@example.com")]
    elif kind == 5:
        user["em"] = f"  Shopper{index}@Example.com "  # raw: normalized and hashed at the door
        user["ph"] = ["(650) 555-01" + f"{index % 100:02d}"]
    elif kind == 6:
        user["em"] = sha("").upper()  # an upper-case placeholder hash
    elif kind == 7:
        user["ph"] = "5f4dcc3b5aa765d61d8327deb882cf99"  # md5: not SHA-256
        user["fbc"] = "fb.1.1763632000.AbCd"  # seconds, not ms: malformed
    elif kind == 8:
        user["external_id"] = [f"cust-{index}", sha(f"cust-{index}")]
        user["zp"] = 94035
        user["unknown_key"] = "x"
    else:
        user["fbc"] = f"fb.1.1763632000000.IwAR{index:x}"
        user["client_ip_address"] = sha("1.2.3.4")  # hashed although Meta wants it as sent
    return user


def generated_lines() -> list[dict[str, Any] | str]:
    """A fixed, varied import file: two pixels, raw and hashed keys, batched and failed deliveries,
    repeated lines and event ids, offsets other than UTC and a few bad lines."""
    rng = random.Random(13)
    lines: list[dict[str, Any] | str] = []
    for index in range(400):
        event_time = START + timedelta(minutes=37 * index)
        received = event_time + timedelta(seconds=rng.randint(0, 30))
        if index % 97 == 0:
            received = event_time + timedelta(days=8)  # too old when received
        name = ("PageView", "ViewContent", "AddToCart", "Purchase")[index % 4]
        event: dict[str, Any] = {"event_name": name, "event_time": int(event_time.timestamp()),
                                 "action_source": "website", "user_data": _user(rng, index),
                                 "custom_data": {"currency": "USD", "value": round(rng.uniform(5, 90), 2)}}
        if index % 13:
            event["event_id"] = f"e{index % 350}"  # some ids come back
        if name == "Purchase":
            event["custom_data"]["order_id"] = f"o{index}"
        batch = index // 20
        attempted = START + timedelta(minutes=37 * 20 * batch + 740)
        delivery: dict[str, Any] | None = {
            "status": "delivered", "attempted_at": to_iso(attempted), "http_status": 200,
            "fbtrace_id": f"T{batch}", "events_received": 20}
        if batch % 7 == 3:
            delivery = {"status": "failed", "attempted_at": to_iso(attempted), "http_status": 400,
                        "error_code": 100, "error_subcode": 2804001, "fbtrace_id": f"F{batch}",
                        "attempts": 2}
        elif batch % 11 == 5:
            delivery = None
        elif batch % 11 == 6:
            delivery = {"status": "pending"}
        pixel = OTHER_PIXEL if index % 5 == 4 else PIXEL
        offset = timezone(timedelta(hours=2)) if index % 3 == 0 else UTC
        line: dict[str, Any] = {"pixel_id": pixel, "received_at": received.astimezone(offset).isoformat(),
                                "event": event}
        if delivery is not None:
            line["delivery"] = delivery
        lines.append(line)
        if index % 50 == 7:
            lines.append(dict(line))  # the same line twice: stored once
    lines[120:120] = ["{not json", {"pixel_id": PIXEL, "event": {"event_name": "Lead"}}]
    return lines


def _orders() -> list[dict[str, Any]]:
    return [{"order_id": f"o{i}", "pixel_id": PIXEL, "created_at": to_iso(START + timedelta(minutes=37 * i)),
             "value": 12.5, "currency": "USD"} for i in range(3, 400, 8)]


def _load(engine: Engine, tmp_path: Path, *, batch_size: int) -> Path:
    path = write_jsonl(tmp_path / "events.jsonl", generated_lines())
    ingest_orders_jsonl(session_or_engine=engine, path=write_jsonl(tmp_path / "orders.jsonl", _orders()),
                        now=NOW)
    ingest_events_jsonl(session_or_engine=engine, path=path, now=NOW, batch_size=batch_size)
    return path


def _expected_events(path: Path) -> list[tuple[Any, ...]]:
    """Each new line's row, computed one line at a time with the plain building blocks."""
    expected: list[tuple[Any, ...]] = []
    seen: set[tuple[str, str]] = set()
    for text in path.read_text().splitlines():
        try:
            item = parse_event_line(text, now=NOW)
        except ValueError:
            continue
        payload = dict(item.event)
        payload["user_data"] = prepare_user_data(payload.get("user_data") or {}).user_data
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        content_hash = hashlib.sha256(
            f"{item.pixel_id}|{to_iso(item.received_at)}|{canonical}".encode()).hexdigest()
        if (item.pixel_id, content_hash) in seen:
            continue
        seen.add((item.pixel_id, content_hash))
        outcome = item.delivery
        attempted = outcome.attempted_at if outcome else None
        expected.append((item.pixel_id, payload["event_name"], from_unix(payload["event_time"]),
                         as_utc(item.received_at), payload, outcome.status if outcome else "never_sent",
                         attempted, content_hash))
    return expected


@pytest.mark.parametrize("batch_size", [7, 5000])
def test_stored_rows_match_a_line_by_line_recomputation(ledger_engine: Engine, tmp_path: Path,
                                                        batch_size: int) -> None:
    path = _load(ledger_engine, tmp_path, batch_size=batch_size)
    expected = _expected_events(path)
    with Session(ledger_engine) as session:
        stored = [(e.pixel_id, e.event_name, as_utc(e.event_time), as_utc(e.received_at), e.payload,
                   e.delivery_status, e.first_attempt_at and as_utc(e.first_attempt_at), e.content_hash)
                  for e in session.scalars(select(Event).order_by(Event.id))]
        assert len(stored) == len(expected) == 400
        assert sorted(stored, key=repr) == sorted(expected, key=repr)  # order: the SQLite digest
        links = session.scalar(select(func.count()).select_from(DeliveryEvent))
        sent = session.scalar(select(func.sum(Delivery.events_sent)))
        assert links == sent == sum(1 for row in expected if row[6] is not None)
        incremental = _rollup_rows(session)
        rebuild_rollups(session)
        assert _rollup_rows(session) == incremental
        assert session.scalar(select(func.sum(EventHourRollup.events))) == 400


def _rollup_rows(session: Session) -> list[tuple[Any, ...]]:
    rows = session.scalars(select(EventHourRollup)).all()
    return sorted((r.pixel_id, as_utc(r.hour), r.event_name, r.events, r.with_event_id,
                   r.duplicate_event_ids, r.too_old, r.future_time, r.undelivered,
                   json.dumps(r.detail, sort_keys=True)) for r in rows)


def test_sqlite_bytes_equal_those_of_the_straightforward_path(sqlite_url: str, tmp_path: Path) -> None:
    from tools.ledger.db import make_engine, migrate

    engine = make_engine(sqlite_url)
    migrate(engine)
    _load(engine, tmp_path, batch_size=64)
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table in DIGEST_TABLES:
            columns = [info[1] for info in connection.exec_driver_sql(f"PRAGMA table_info({table})")
                       if info[1] not in ADDED_COLUMNS.get(table, set())]
            for row in connection.exec_driver_sql(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"):
                row = tuple(_without_added_key(table, c, v) for c, v in zip(columns, row, strict=True))
                digest.update(repr(row).encode())
    engine.dispose()
    assert digest.hexdigest() == REFERENCE_SQLITE_DIGEST


@pytest.mark.parametrize("value", [
    datetime(2026, 11, 20, 10, 0, tzinfo=UTC), datetime(2026, 11, 20, 10, 0, 1, 5, tzinfo=UTC),
    datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2026, 1, 2, 3, 4, 5), datetime(987, 6, 5, 4, 3, 2, 1, tzinfo=UTC), None])
def test_sqlite_datetime_text_is_sqlalchemys(value: datetime | None) -> None:
    process = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert process is not None
    assert sqlite_datetime(value) == process(value)
