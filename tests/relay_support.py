"""Helpers of the relay tests: the relay served by uvicorn on a loopback port, events, ledger reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from agent.relay.app import RelayDeps, build_relay_app
from tests.fixtures.meta import SIM_TOKEN
from tools.ledger.models import ALL_TABLES, Event
from tools.loopback import ThreadedServer
from tools.relay.access import RelayAuth
from tools.timeutil import to_unix, utcnow

PIXEL = "1234567890"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def make_event(event_id: str, *, at: datetime | None = None, **user_data: Any) -> dict[str, Any]:
    """A valid website Purchase an hour old (by default) with hashed email, fbp, ip and user agent."""
    data: dict[str, Any] = {"em": [sha("someone@example.com")], "client_ip_address": "203.0.113.9",
                            "client_user_agent": "Mozilla/5.0", "fbp": "fb.1.1763600000000.123456"}
    data.update(user_data)
    return {"event_name": "Purchase", "event_time": to_unix(at or utcnow() - timedelta(hours=1)),
            "event_id": event_id, "action_source": "website",
            "event_source_url": "https://shop.example/thanks", "user_data": data,
            "custom_data": {"currency": "USD", "value": 42.5}}


def session_factory(engine: Engine) -> Callable[[], Session]:
    return lambda: Session(engine, expire_on_commit=False)


@contextmanager
def running_relay(engine: Engine, graph_url: str, **deps: Any) -> Iterator[str]:
    """Serve the relay app (uvicorn, access log off) on a free loopback port; yields its base URL.
    By default ``PIXEL`` is configured with the simulator's token (``auth=`` to change who may send)."""
    deps.setdefault("auth", RelayAuth.static({PIXEL: SIM_TOKEN}))
    app = build_relay_app(RelayDeps(session_factory=session_factory(engine), graph_url=graph_url, **deps))
    with ThreadedServer(app, lifespan="on", name="relay") as server:
        yield server.url


def ledger_events(engine: Engine) -> list[Event]:
    with Session(engine) as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def ledger_dump(engine: Engine) -> str:
    """Every row of every ledger table as text (to look for a raw value anywhere in the database)."""
    parts = []
    with engine.connect() as connection:
        for table in ALL_TABLES:
            parts.extend(repr(tuple(row)) for row in connection.execute(text(f"SELECT * FROM {table}")))
    return "\n".join(parts)


