"""Shared builders for the fix tests (no tests here): ledger events in known states."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, null, update
from sqlmodel import Session

from tests.fixtures.db import PIXEL, sha
from tools.fixes.planner import decide, propose_fix
from tools.ledger.db import session_factory
from tools.ledger.models import Event
from tools.ledger.store import DeliveryOutcome, IncomingEvent, store_events
from tools.meta.simulator import RunningSimulator
from tools.timeutil import to_unix

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
VALID_FBC = "fb.1.1763632000000.AbCdEf"


def event(i: int, *, event_time: datetime, name: str = "Purchase", prefix: str = "ev",
          user_data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event_name": name, "event_time": to_unix(event_time), "event_id": f"{prefix}-{i}",
            "action_source": "website", "event_source_url": "https://shop.example/thanks",
            "user_data": user_data if user_data is not None else {
                "em": [sha(f"person{i}@example.com")], "client_ip_address": "203.0.113.9",
                "client_user_agent": "Mozilla/5.0", "fbp": "fb.1.1763600000000.123456"},
            "custom_data": {"currency": "USD", "value": 10.0 + i}}


def failed(code: int, subcode: int | None, at: datetime = AT - timedelta(hours=3)) -> DeliveryOutcome:
    return DeliveryOutcome(status="failed", attempted_at=at, http_status=400, error_code=code,
                           error_subcode=subcode, events_received=0)


def seed(engine: Engine, count: int, *, event_time: datetime, name: str = "Purchase", prefix: str = "ev",
         delivery: DeliveryOutcome | None = None, user_data: dict[str, Any] | None = None,
         start: int = 0) -> list[int]:
    """Store ``count`` events; returns their ledger row ids."""
    items = [IncomingEvent(pixel_id=PIXEL, received_at=event_time + timedelta(seconds=1),
                           event=event(i, event_time=event_time, name=name, prefix=prefix,
                                       user_data=user_data), delivery=delivery)
             for i in range(start, start + count)]
    with Session(engine) as session:
        stored = store_events(session, items)
        session.commit()
    return [row_id for row_id in stored.event_row_ids if row_id is not None]


def purge(engine: Engine, row_ids: list[int]) -> None:
    with Session(engine) as session:
        session.execute(update(Event).where(Event.id.in_(row_ids)).values(payload=null()))
        session.commit()


def approved(engine: Engine, *, kind: str = "replay", params: dict[str, Any] | None = None,
             at: datetime = AT) -> str:
    """An approved proposal over the last 7 days (or ``params``); returns its id."""
    params = params or {"since": "2026-11-14T00:00:00Z", "until": "2026-11-20T12:00:00Z"}
    with Session(engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind=kind, params=params, at=at)
        decide(session, proposal_id=proposal.id, actor="U123", decision="approve", at=at)
    return proposal.id


def sessions(engine: Engine) -> Callable[[], Session]:
    return session_factory(engine)


def received_ids(sim: RunningSimulator) -> Counter[str]:
    return Counter(item["event"]["event_id"] for item in sim.state.received(PIXEL))
