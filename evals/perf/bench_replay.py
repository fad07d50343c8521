"""Replay throughput to the local Graph API simulator (events/s), on a SQLite ledger.

Run: ``.venv/bin/python -m evals.perf.bench_replay [N ...]`` (default 10000 50000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session

from tools.fixes.execute import execute_fix
from tools.fixes.planner import decide, propose_fix
from tools.ledger.db import make_engine, migrate, session_factory
from tools.ledger.store import IncomingEvent, store_events
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import DEFAULT_TOKEN
from tools.timeutil import to_unix

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PIXEL = "1234567890"


def _events(count: int) -> list[IncomingEvent]:
    start = AT - timedelta(days=2)
    return [IncomingEvent(pixel_id=PIXEL, received_at=start + timedelta(seconds=i), event={
        "event_name": "Purchase", "event_time": to_unix(start + timedelta(seconds=i)), "event_id": f"o-{i}",
        "action_source": "website", "event_source_url": "https://shop.example/thanks",
        "user_data": {"em": ["a" * 64], "client_ip_address": "203.0.113.9",
                      "client_user_agent": "Mozilla/5.0"},
        "custom_data": {"currency": "USD", "value": 1.0}}) for i in range(count)]


def bench(count: int) -> tuple[float, float, float]:
    """(seconds to plan+approve, seconds to execute, events/s of the execution)."""
    with tempfile.TemporaryDirectory() as tmp, run_simulator_in_thread() as sim:
        sim.state.set_now(AT)
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        with Session(engine) as session:
            store_events(session, _events(count))
            session.commit()
        t0 = time.perf_counter()
        with Session(engine) as session:
            proposal = propose_fix(session, pixel_id=PIXEL, kind="replay", at=AT,
                                   params={"since": "2026-11-13T13:00:00Z", "until": "2026-11-20T12:00:00Z"})
            decide(session, proposal_id=proposal.id, actor="bench", decision="approve", at=AT)
        t1 = time.perf_counter()
        with GraphClient(base_url=sim.url, access_token=DEFAULT_TOKEN) as client:
            result = execute_fix(session_factory(engine), proposal_id=proposal.id, client=client, at=AT)
        t2 = time.perf_counter()
        engine.dispose()
        assert result.sent == count and len(sim.state.received(PIXEL)) == count
    return t1 - t0, t2 - t1, count / (t2 - t1)


def main(argv: list[str]) -> None:
    sizes = [int(arg) for arg in argv] or [10_000, 50_000]
    print(f"{'events':>8} {'plan s':>8} {'execute s':>10} {'events/s':>10}")
    for size in sizes:
        plan, execute, rate = bench(size)
        print(f"{size:>8} {plan:>8.2f} {execute:>10.2f} {rate:>10.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
