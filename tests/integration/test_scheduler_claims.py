"""The audit_claims table on SQLite and Postgres: one winner per pixel-hour, lease take-over, retries
of failed hours, and errors stored without secrets."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tools.ledger.models import SQLModel
from tools.schedule.claims import (
    AuditClaim,
    claim,
    describe_error,
    finish,
    get_claim,
    is_held,
    last_done,
    last_done_by_pixel,
)

PIXEL = "1234567890"
NOW = datetime(2026, 11, 20, 15, 12, tzinfo=UTC)
HOUR_END = datetime(2026, 11, 20, 15, tzinfo=UTC)
LEASE = timedelta(minutes=30)


def take(engine: Engine, worker: str, *, now: datetime = NOW, end: datetime = HOUR_END,
         max_attempts: int = 3) -> bool:
    with Session(engine) as session:
        return claim(session, pixel_id=PIXEL, window_end=end, worker=worker, now=now, lease=LEASE,
                     max_attempts=max_attempts)


def end_claim(engine: Engine, worker: str, status: str, *, error: str | None = None,
              end: datetime = HOUR_END) -> bool:
    with Session(engine) as session:
        return finish(session, pixel_id=PIXEL, window_end=end, worker=worker, now=NOW + timedelta(minutes=1),
                      status=status, error=error)  # type: ignore[arg-type]


def row(engine: Engine, end: datetime = HOUR_END) -> AuditClaim:
    with Session(engine) as session:
        found = get_claim(session, pixel_id=PIXEL, window_end=end)
    assert found is not None
    return found


def test_migration_builds_the_model_table(ledger_engine: Engine) -> None:
    def only_claims(obj: object, name: str | None, type_: str, _reflected: bool, _other: object) -> bool:
        return type_ != "table" or name == "audit_claims"

    assert "audit_claims" in SQLModel.metadata.tables
    with ledger_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": only_claims})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_one_worker_wins_an_hour_and_finishing_records_it(ledger_engine: Engine) -> None:
    assert take(ledger_engine, "a") is True
    assert take(ledger_engine, "b") is False
    assert take(ledger_engine, "a") is False  # not even the holder claims twice
    assert is_held(row(ledger_engine), now=NOW)
    assert end_claim(ledger_engine, "b", "done") is False  # b never held it
    assert end_claim(ledger_engine, "a", "done") is True
    done = row(ledger_engine)
    assert (done.status, done.claimed_by, done.attempts) == ("done", "a", 1)
    assert done.finished_at is not None
    assert take(ledger_engine, "b", now=NOW + timedelta(days=1)) is False  # done is final
    with Session(ledger_engine) as session:
        assert last_done(session, PIXEL) == HOUR_END
        assert last_done(session, "other") is None
        assert last_done_by_pixel(session, [PIXEL, "other"]) == {PIXEL: HOUR_END}


def test_last_done_ignores_running_and_failed_hours(ledger_engine: Engine) -> None:
    earlier = HOUR_END - timedelta(hours=2)
    take(ledger_engine, "a", end=earlier)
    end_claim(ledger_engine, "a", "done", end=earlier)
    take(ledger_engine, "a", end=HOUR_END - timedelta(hours=1))
    end_claim(ledger_engine, "a", "failed", end=HOUR_END - timedelta(hours=1), error="boom")
    take(ledger_engine, "a")  # still running
    with Session(ledger_engine) as session:
        assert last_done(session, PIXEL) == earlier


def test_an_expired_running_claim_is_taken_over_and_the_old_worker_cannot_finish(
        ledger_engine: Engine) -> None:
    assert take(ledger_engine, "dead") is True
    assert take(ledger_engine, "b", now=NOW + LEASE - timedelta(seconds=1)) is False
    assert take(ledger_engine, "b", now=NOW + LEASE) is True
    taken = row(ledger_engine)
    assert (taken.claimed_by, taken.status, taken.attempts) == ("b", "running", 2)
    assert end_claim(ledger_engine, "dead", "done") is False
    assert end_claim(ledger_engine, "b", "done") is True
    assert row(ledger_engine).claimed_by == "b"


def test_a_failed_hour_is_retried_until_its_attempts_are_used(ledger_engine: Engine) -> None:
    for attempt in range(1, 4):
        assert take(ledger_engine, f"w{attempt}", max_attempts=3) is True
        assert end_claim(ledger_engine, f"w{attempt}", "failed", error="boom") is True
        assert row(ledger_engine).attempts == attempt
    assert take(ledger_engine, "w4", max_attempts=3) is False
    assert row(ledger_engine).status == "failed"


def test_errors_are_stored_short_and_without_secrets(ledger_engine: Engine) -> None:
    message = ("GET https://graph.example/v25.0/123/stats?access_token=EAAB1234secret&x=1 failed for "
               "jane.doe@example.com, phone +1 (555) 123-4567, Bearer abc.def " + "x" * 500)
    take(ledger_engine, "a")
    end_claim(ledger_engine, "a", "failed", error=describe_error(RuntimeError(message)))
    stored = row(ledger_engine).error
    assert stored is not None and stored.startswith("RuntimeError: ")
    assert len(stored) <= 200
    for secret in ("EAAB1234secret", "jane.doe", "555", "abc.def", "x" * 30):
        assert secret not in stored
    assert describe_error(ValueError()) == "ValueError"


def test_concurrent_claims_have_exactly_one_winner(ledger_engine: Engine) -> None:
    workers = 8
    barrier = threading.Barrier(workers)
    results: dict[str, bool] = {}

    def contend(name: str) -> None:
        barrier.wait()
        results[name] = take(ledger_engine, name)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [name for name, won in results.items() if won]
    assert len(results) == workers
    assert len(winners) == 1
    assert row(ledger_engine).claimed_by == winners[0]
