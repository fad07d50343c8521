"""The hourly scheduler over a stubbed audit: catch-up, grace, catch-up limit, failures and retries,
lease take-over, proposal expiry, and two replicas sharing one database (SQLite and Postgres)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agent.scheduler import RunRecord, Scheduler
from agent.settings import load_settings
from agent.wiring import AgentWiring
from tools.fixes.models import FixProposalRow
from tools.ledger.db import make_engine, migrate
from tools.ledger.pixels import PixelConfig
from tools.schedule.claims import AuditClaim, claim, finish

GRACE = timedelta(minutes=10)


def at(hour: int, minute: int = 0, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@dataclass
class AuditLog:
    """Every audit call made by any stub, in the order they started (shared between replicas)."""

    calls: list[tuple[str, datetime, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, pixel_id: str, end: datetime, worker: str) -> None:
        with self.lock:
            self.calls.append((pixel_id, end, worker))

    def hours(self) -> list[tuple[str, datetime]]:
        return [(pixel_id, end) for pixel_id, end, _ in self.calls]


@dataclass
class StubServices:
    """Stands in for AgentServices: records audits; fails on chosen pixel-hours."""

    wiring: AgentWiring
    log: AuditLog
    worker: str = "w"
    delay: float = 0.0
    failures: dict[tuple[str, datetime], int] = field(default_factory=dict)  # remaining failures

    def audit_pixel(self, pixel: PixelConfig, at: datetime) -> dict[str, Any]:
        self.log.add(pixel.id, at, self.worker)
        if self.delay:
            time.sleep(self.delay)
        key = (pixel.id, at)
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise RuntimeError("Graph API said no: access_token=EAAsecret123 for a@b.example")
        return {"report": {"pixel_id": pixel.id}, "audit_id": len(self.log.calls)}


def wiring_on(sqlite_engine: Engine) -> AgentWiring:
    return AgentWiring(settings=load_settings(database_url=str(sqlite_engine.url)), engine=sqlite_engine)


def pixels_of(*ids: str) -> list[PixelConfig]:
    return [PixelConfig(id=pixel_id) for pixel_id in ids]


def mark_done(sqlite_engine: Engine, pixel_id: str, end: datetime) -> None:
    with Session(sqlite_engine) as session:
        assert claim(session, pixel_id=pixel_id, window_end=end, worker="past", now=end)
        assert finish(session, pixel_id=pixel_id, window_end=end, worker="past", now=end, status="done")


def claims(sqlite_engine: Engine) -> dict[tuple[str, datetime], AuditClaim]:
    with Session(sqlite_engine) as session:
        rows = session.scalars(select(AuditClaim)).all()
    return {(row.pixel_id, row.window_end.astimezone(UTC)): row for row in rows}


def scheduler(services: StubServices, pixels: list[PixelConfig], **kwargs: Any) -> Scheduler:
    return Scheduler(services_factory=services, pixels=lambda: pixels, worker_id=services.worker,
                     grace=GRACE, **kwargs)


def test_catch_up_after_downtime_audits_each_missed_hour_once_in_order(sqlite_engine: Engine) -> None:
    mark_done(sqlite_engine, "1", at(10))
    log = AuditLog()
    seen: list[tuple[str, str]] = []
    sched = scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("1"),
                      on_audit=lambda pixel, state: seen.append((pixel.id, state["report"]["pixel_id"])))
    records = sched.run_once(now=at(15, 12))
    expected = [("1", at(h)) for h in range(11, 16)]
    assert log.hours() == expected
    assert [(r.pixel_id, r.window_end, r.status) for r in records] == [(p, e, "done") for p, e in expected]
    assert [r.audit_id for r in records] == [1, 2, 3, 4, 5]
    assert seen == [("1", "1")] * 5
    assert all(row.status == "done" for row in claims(sqlite_engine).values())
    assert sched.run_once(now=at(15, 40)) == []
    assert len(log.calls) == 5


def test_pixels_are_caught_up_together_oldest_hour_first(sqlite_engine: Engine) -> None:
    mark_done(sqlite_engine, "a", at(12))
    mark_done(sqlite_engine, "b", at(11))
    log = AuditLog()
    scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("a", "b")).run_once(now=at(14, 30))
    assert log.hours() == [("b", at(12)), ("a", at(13)), ("b", at(13)), ("a", at(14)), ("b", at(14))]


def test_first_run_audits_the_latest_settled_hour_only(sqlite_engine: Engine) -> None:
    log = AuditLog()
    sched = scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("1"))
    sched.run_once(now=at(15, 5))  # 15:00 has not settled yet (grace 10 min)
    assert log.hours() == [("1", at(14))]
    sched.run_once(now=at(15, 10))
    assert log.hours() == [("1", at(14)), ("1", at(15))]


def test_catch_up_is_limited_and_older_hours_are_reported_once(sqlite_engine: Engine) -> None:
    mark_done(sqlite_engine, "1", at(3))
    log = AuditLog()
    sched = scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("1"), max_catch_up=4)
    sched.run_once(now=at(15, 12))
    assert log.hours() == [("1", at(h)) for h in (12, 13, 14, 15)]
    assert len(sched.skipped) == 1
    gap = sched.skipped[0]
    assert (gap.pixel_id, gap.first, gap.last, gap.count) == ("1", at(4), at(11), 8)
    sched.run_once(now=at(16, 12))
    assert log.hours()[-1] == ("1", at(16))
    assert len(sched.skipped) == 1


def test_a_failing_hour_is_recorded_and_retried_without_stopping_other_pixels(sqlite_engine: Engine) -> None:
    for pixel_id in ("bad", "good"):
        mark_done(sqlite_engine, pixel_id, at(10))
    log = AuditLog()
    services = StubServices(wiring_on(sqlite_engine), log, failures={("bad", at(12)): 1})
    sched = scheduler(services, pixels_of("bad", "good"))

    first = sched.run_once(now=at(14, 15))
    failed = [r for r in first if r.status == "failed"]
    assert [(r.pixel_id, r.window_end) for r in failed] == [("bad", at(12))]
    assert failed[0].error is not None and failed[0].error.startswith("RuntimeError")
    assert "EAAsecret123" not in failed[0].error and "a@b.example" not in failed[0].error
    # The bad pixel's later hours wait for the failed one; the good pixel is fully audited.
    assert [h for p, h in log.hours() if p == "good"] == [at(11), at(12), at(13), at(14)]
    assert [h for p, h in log.hours() if p == "bad"] == [at(11), at(12)]
    row = claims(sqlite_engine)[("bad", at(12))]
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error == failed[0].error

    second = sched.run_once(now=at(14, 20))
    assert [(r.pixel_id, r.window_end, r.status) for r in second] == [
        ("bad", at(12), "done"), ("bad", at(13), "done"), ("bad", at(14), "done")]
    row = claims(sqlite_engine)[("bad", at(12))]
    assert (row.status, row.attempts, row.error) == ("done", 2, None)


def test_an_hour_that_keeps_failing_is_given_up_after_max_attempts(sqlite_engine: Engine) -> None:
    mark_done(sqlite_engine, "1", at(10))
    log = AuditLog()
    services = StubServices(wiring_on(sqlite_engine), log, failures={("1", at(11)): 99})
    sched = scheduler(services, pixels_of("1"), max_attempts=2)
    assert [r.status for r in sched.run_once(now=at(12, 15))] == ["failed"]
    assert [r.status for r in sched.run_once(now=at(12, 16))] == ["failed"]
    third = sched.run_once(now=at(12, 17))
    assert [(r.window_end, r.status) for r in third] == [(at(12), "done")]
    assert log.hours().count(("1", at(11))) == 2


def test_a_dead_workers_claim_is_taken_over_once_its_lease_expires(sqlite_engine: Engine) -> None:
    mark_done(sqlite_engine, "1", at(10))
    with Session(sqlite_engine) as session:  # a replica took 11:00 at 11:12 and died
        assert claim(session, pixel_id="1", window_end=at(11), worker="dead", now=at(11, 12),
                     lease=timedelta(minutes=30))
    log = AuditLog()
    sched = scheduler(StubServices(wiring_on(sqlite_engine), log, worker="alive"), pixels_of("1"),
                      lease=timedelta(minutes=30))
    assert sched.run_once(now=at(11, 20)) == []  # the lease is live: maybe it is just slow
    assert log.calls == []
    records = sched.run_once(now=at(12, 15))
    assert [(r.window_end, r.status) for r in records] == [(at(11), "done"), (at(12), "done")]
    row = claims(sqlite_engine)[("1", at(11))]
    assert (row.claimed_by, row.status, row.attempts) == ("alive", "done", 2)


def test_an_on_audit_failure_does_not_undo_the_audit(sqlite_engine: Engine) -> None:
    log = AuditLog()

    def broken_hook(_pixel: PixelConfig, _state: dict[str, Any]) -> None:
        raise ConnectionError("slack is down")

    sched = scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("1"), on_audit=broken_hook)
    assert [r.status for r in sched.run_once(now=at(9, 30))] == ["done"]
    assert claims(sqlite_engine)[("1", at(9))].status == "done"


def test_each_round_expires_stale_fix_proposals(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        session.add(FixProposalRow(id="p-1", pixel_id="1", kind="replay", status="proposed",
                                   created_at=at(1), expires_at=at(5)))
        session.add(FixProposalRow(id="p-2", pixel_id="1", kind="replay", status="proposed",
                                   created_at=at(1), expires_at=at(23)))
        session.commit()
    scheduler(StubServices(wiring_on(sqlite_engine), AuditLog()), pixels_of("1")).run_once(now=at(9, 30))
    with Session(sqlite_engine) as session:
        assert session.get(FixProposalRow, "p-1").status == "expired"  # type: ignore[union-attr]
        assert session.get(FixProposalRow, "p-2").status == "proposed"  # type: ignore[union-attr]


def test_a_services_factory_is_opened_once_per_round(sqlite_engine: Engine) -> None:
    from contextlib import contextmanager

    opened: list[int] = []
    log = AuditLog()

    @contextmanager
    def factory() -> Iterator[StubServices]:
        opened.append(1)
        yield StubServices(wiring_on(sqlite_engine), log)

    mark_done(sqlite_engine, "1", at(10))
    sched = Scheduler(services_factory=factory, pixels=lambda: pixels_of("1"), grace=GRACE)
    sched.run_once(now=at(13, 30))
    assert opened == [1]
    assert log.hours() == [("1", at(h)) for h in (11, 12, 13)]


def test_run_forever_runs_rounds_until_stopped(sqlite_engine: Engine) -> None:
    log = AuditLog()
    mark_done(sqlite_engine, "1", at(10))
    sched = scheduler(StubServices(wiring_on(sqlite_engine), log), pixels_of("1"))
    sched.clock = lambda: at(12, 30)
    stop = threading.Event()
    thread = threading.Thread(target=sched.run_forever, args=(stop,), kwargs={"interval_seconds": 0.01})
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert log.hours() == [("1", at(11)), ("1", at(12))]  # many rounds, each hour once


# --- several replicas on one database ------------------------------------------------------------

def run_replicas(url: str, *, replicas: int = 2) -> tuple[AuditLog, list[list[RunRecord]], Engine]:
    """Replicas with their own engines (as separate processes would have) racing over one database."""
    setup = make_engine(url)
    migrate(setup)
    pixel_ids = ("p1", "p2", "p3")
    for pixel_id in pixel_ids:
        mark_done(setup, pixel_id, at(10))
    log = AuditLog()
    barrier = threading.Barrier(replicas)
    results: list[list[RunRecord]] = [[] for _ in range(replicas)]
    engines = [make_engine(url) for _ in range(replicas)]

    def replica(index: int) -> None:
        services = StubServices(wiring_on(engines[index]), log, worker=f"replica-{index}", delay=0.02)
        sched = scheduler(services, pixels_of(*pixel_ids))
        barrier.wait()
        results[index] = sched.run_once(now=at(15, 12))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for sqlite_engine in engines:
        sqlite_engine.dispose()
    return log, results, setup


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_replicas_audit_every_pixel_hour_exactly_once(db: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{db}_url")
    log, results, setup = run_replicas(url)
    try:
        expected = sorted((p, at(h)) for p in ("p1", "p2", "p3") for h in range(11, 16))
        assert sorted(log.hours()) == expected  # every pixel-hour, none twice
        records = [r for result in results for r in result]
        assert sorted((r.pixel_id, r.window_end) for r in records) == expected
        assert all(r.status == "done" for r in records)
        rows = claims(setup)
        assert all(rows[key].status == "done" for key in expected)
        # The claims say who audited what, and agree with who actually ran each audit.
        assert {(p, e): w for p, e, w in log.calls} == {key: rows[key].claimed_by for key in expected}
        # Within a pixel the hours were audited in order, whoever audited them.
        for pixel_id in ("p1", "p2", "p3"):
            hours = [e for p, e in log.hours() if p == pixel_id]
            assert hours == sorted(hours)
        with Session(setup) as session:
            assert session.scalar(select(func.count()).select_from(AuditClaim)) == 15 + 3
    finally:
        setup.dispose()
