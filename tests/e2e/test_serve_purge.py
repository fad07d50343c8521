"""``capi-agent serve`` purges stored event payloads past the retention (``CAPI_PAYLOAD_RETENTION_DAYS``,
default 8) in a background loop, and ``/healthz`` says when it last purged and how many. Through the
server's own app under uvicorn on a loopback port, on SQLite and Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from agent.agent_services import AgentServices
from agent.checkpoint import open_checkpointer
from agent.server import ServerParts, build_server_app
from agent.settings import load_settings
from agent.wiring import AgentWiring
from tests.e2e.test_serve_world import Clock
from tests.integration.test_fixes_support import seed
from tools.ledger.models import Event
from tools.loopback import ThreadedServer
from tools.timeutil import to_iso

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@contextmanager
def serving(engine: Engine, url: str, *, run_loops: bool, **settings: Any) -> Iterator[httpx.Client]:
    """The server's app with its loops (the purge every 0.1 s) on a fixed clock; yields an HTTP client."""
    wiring = AgentWiring(settings=load_settings(database_url=url, **settings), engine=engine)
    with open_checkpointer(url) as checkpointer:
        services = AgentServices(wiring=wiring, checkpointer=checkpointer, clock=Clock(NOW))
        parts = ServerParts(wiring=wiring, services=services, clock=Clock(NOW), purge_interval=0.1,
                            scheduler_interval=3600, forward_interval=3600)
        with ThreadedServer(build_server_app(parts, run_loops=run_loops), lifespan="on", name="serve") as server, \
                httpx.Client(base_url=server.url, timeout=10) as http:
            yield http


def purge_health(http: httpx.Client, *, wait_for_run: bool = True) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        health = http.get("/healthz")
        assert health.status_code == 200
        purge = health.json()["payload_purge"]
        if purge["last_at"] is not None or not wait_for_run or time.monotonic() > deadline:
            return health.json()
        time.sleep(0.05)


def payload_kept(engine: Engine) -> dict[str, bool]:
    with Session(engine) as session:
        return {row.event_id: row.payload is not None for row in session.scalars(select(Event))}


def test_serve_purges_payloads_older_than_eight_days_and_healthz_says_so(
        ledger_engine: Engine, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPI_PAYLOAD_RETENTION_DAYS", raising=False)
    seed(ledger_engine, 3, event_time=NOW - timedelta(days=8, hours=1), prefix="old")
    seed(ledger_engine, 2, event_time=NOW - timedelta(days=7, hours=23), prefix="young")  # 7 days: replayable
    with serving(ledger_engine, ledger_url, run_loops=True) as http:
        status = purge_health(http)
        purge = status["payload_purge"]
        assert purge["retention_days"] == 8
        assert purge["last_at"] == to_iso(NOW)
        assert purge["purged_total"] == 3  # later rounds find nothing more to purge
        assert purge["last_purged"] in (0, 3)
        assert status["loops"]["payload-purge"] is True
    kept = payload_kept(ledger_engine)
    assert {k: v for k, v in kept.items() if k.startswith("old")} == {f"old-{i}": False for i in range(3)}
    assert {k: v for k, v in kept.items() if k.startswith("young")} == {f"young-{i}": True for i in range(2)}
    with Session(ledger_engine) as session:  # rows (and their flags, rollups) stay: only the payload goes
        assert len(session.scalars(select(Event)).all()) == 5


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_the_retention_is_configurable(ledger_engine: Engine, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPI_PAYLOAD_RETENTION_DAYS", "2")
    seed(ledger_engine, 2, event_time=NOW - timedelta(days=3), prefix="three-days")
    seed(ledger_engine, 1, event_time=NOW - timedelta(days=1), prefix="one-day")
    with serving(ledger_engine, ledger_url, run_loops=True) as http:
        purge = purge_health(http)["payload_purge"]
    assert purge["retention_days"] == 2 and purge["purged_total"] == 2
    assert payload_kept(ledger_engine) == {"three-days-0": False, "three-days-1": False, "one-day-0": True}


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_healthz_before_any_purge_says_none_yet(ledger_engine: Engine, ledger_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPI_PAYLOAD_RETENTION_DAYS", raising=False)
    seed(ledger_engine, 1, event_time=NOW - timedelta(days=30), prefix="old")
    with serving(ledger_engine, ledger_url, run_loops=False) as http:
        purge = purge_health(http, wait_for_run=False)["payload_purge"]
    assert purge == {"retention_days": 8, "last_at": None, "last_purged": None, "purged_total": 0}
    assert payload_kept(ledger_engine) == {"old-0": True}
