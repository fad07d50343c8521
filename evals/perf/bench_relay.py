"""Relay benchmark: ingest throughput over HTTP against plain SQL inserts of the same rows.

    python evals/perf/bench_relay.py [--requests 200] [--events 50] [--database-url URL]

The relay (uvicorn, loopback) forwards every request to the Graph API simulator (loopback) with the
real GraphClient and records events and deliveries in a fresh SQLite ledger (or a fresh database on
the Postgres server given by --database-url). The baseline inserts the same number of event rows into
the ``events`` table with one executemany per request-sized batch. Both figures are printed with
their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from agent.relay.app import RelayDeps, build_relay_app
from tools.ledger.db import make_engine, migrate
from tools.ledger.models import Event
from tools.loopback import ThreadedServer
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import DEFAULT_TOKEN
from tools.relay.access import RelayAuth
from tools.timeutil import to_unix, utcnow

PIXEL = "1234567890"


def _event(n: int, event_time: int) -> dict:
    email = hashlib.sha256(f"buyer{n}@example.com".encode()).hexdigest()
    return {"event_name": "Purchase", "event_time": event_time, "event_id": f"bench-{n}",
            "action_source": "website", "event_source_url": "https://shop.example/thanks",
            "user_data": {"em": [email], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                          "fbp": f"fb.1.1763600000000.{n}"},
            "custom_data": {"currency": "USD", "value": 42.5, "order_id": f"o-{n}"}}


@contextmanager
def fresh_engine(database_url: str | None) -> Iterator[Engine]:
    """A migrated engine on a new SQLite file, or on a new database of the given Postgres server."""
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate(engine)
            yield engine
            engine.dispose()
        return
    name = f"capi_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(database_url).set(database=name).render_as_string(hide_password=False))
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def relay_rate(engine: Engine, requests: int, per_request: int) -> float:
    """Events per second through the relay over HTTP (forwarded to the simulator and recorded)."""
    event_time = to_unix(utcnow() - timedelta(hours=1))
    with run_simulator_in_thread() as sim:
        deps = RelayDeps(session_factory=lambda: Session(engine, expire_on_commit=False), graph_url=sim.url,
                         forward_timeout=10.0, auth=RelayAuth.static({PIXEL: DEFAULT_TOKEN}))
        server = ThreadedServer(build_relay_app(deps), name="relay").start()
        url = f"{server.url}/v25.0/{PIXEL}/events"
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=30) as client:
                started = time.perf_counter()
                for r in range(requests):
                    batch = [_event(r * per_request + i, event_time) for i in range(per_request)]
                    response = client.post(url, json={"data": batch})
                    if response.status_code != 200 or response.json().get("events_received") != per_request:
                        raise RuntimeError(f"relay answered {response.status_code}: {response.text[:200]}")
                elapsed = time.perf_counter() - started
        finally:
            server.stop()
        received = len(sim.state.received(PIXEL))
    if received != requests * per_request:
        raise RuntimeError(f"simulator received {received} events, expected {requests * per_request}")
    return requests * per_request / elapsed


def sql_rate(engine: Engine, requests: int, per_request: int) -> float:
    """Events per second for plain inserts of equivalent rows into ``events`` (one executemany a batch)."""
    now = utcnow()
    started = time.perf_counter()
    for r in range(requests):
        rows = []
        for i in range(per_request):
            n = r * per_request + i
            event = _event(n, to_unix(now))
            rows.append({"pixel_id": PIXEL, "event_name": "Purchase", "event_time": now, "received_at": now,
                         "event_id": event["event_id"], "order_ref": f"o-{n}", "action_source": "website",
                         "payload": event, "flags": {"keys": ["em", "fbp"]}, "delivery_status": "delivered",
                         "attempts": 1, "content_hash": hashlib.sha256(str(n).encode()).hexdigest()})
        with Session(engine) as session:
            session.execute(insert(Event.__table__), rows)
            session.commit()
    return requests * per_request / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--events", type=int, default=50, help="events per request (<= 1000)")
    parser.add_argument("--database-url", default=None, help="a Postgres server URL (default: SQLite)")
    args = parser.parse_args()
    with fresh_engine(args.database_url) as engine:
        relay = relay_rate(engine, args.requests, args.events)
    with fresh_engine(args.database_url) as engine:
        plain = sql_rate(engine, args.requests, args.events)
    backend = "postgres" if args.database_url else "sqlite"
    print(f"{args.requests} requests x {args.events} events, {backend}")
    print(f"{'relay over HTTP (validate, hash, record, forward, record answer)':<66}{relay:>10,.0f} events/s")
    print(f"{'plain SQL inserts into events':<66}{plain:>10,.0f} events/s")
    print(f"{'ratio relay / plain SQL':<66}{relay / plain:>10.2f}")


if __name__ == "__main__":
    main()
