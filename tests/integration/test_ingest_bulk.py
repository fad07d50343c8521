"""The bulk import (COPY on Postgres, large transactions) stores what the ordinary paths store, is
idempotent, reports a bad line and keeps the rest, and survives a crash between transactions."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

import tools.ledger.ingest as ingest_module
from tests.fixtures.db import DEFAULT_POSTGRES_URL, PIXEL, delivered, event_line, write_jsonl
from tests.integration.test_ledger_ingest_fastpath import NOW, _orders, generated_lines
from tools.ledger.db import make_engine, migrate
from tools.ledger.ingest import IngestProgress, ingest_events_jsonl, ingest_orders_jsonl
from tools.ledger.models import Delivery, DeliveryEvent, Event
from tools.ledger.rollups import rebuild_rollups
from tools.timeutil import as_utc

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# Tables whose rows depend on how lines are grouped into batches (lines of one request form one
# delivery within a batch), so a one-line-at-a-time import differs there by design.
GROUPED_BY_BATCH = {"deliveries", "delivery_events", "delivery_hours"}
ROLLUPS = ("event_hours", "delivery_hours", "order_hours", "arrival_hours")


@contextmanager
def _another_ledger(url: str, tmp_path: Path) -> Iterator[Engine]:
    """A second, empty, migrated ledger of the same kind as ``url``."""
    if url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / f'other-{uuid.uuid4().hex[:6]}.db'}")
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    server = os.environ.get("CAPI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"capi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(server).set(database=name).render_as_string(hide_password=False))
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in "{[":  # JSON stored as text (SQLite reflection)
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def _contents(engine: Engine, *, skip: set[str] = frozenset(), without_ids: bool = False
              ) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, values normalised across dialects, in a stable order."""
    metadata = MetaData()
    metadata.reflect(engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name in skip or table.name == "alembic_version":
                continue
            columns = [c for c in table.columns if not (without_ids and (
                c.name == "id" or c.name in ("delivery_id", "event_row_id")))]
            if not columns:  # nothing but ids: compare how many rows there are
                count = connection.execute(select(func.count()).select_from(table)).scalar_one()
                out[table.name] = [()] * count
                continue
            rows = connection.execute(select(*columns)).all()
            out[table.name] = sorted((tuple(_value(v) for v in row) for row in rows), key=repr)
    return out


def _load(engine: Engine, events: Path, orders: Path, **options: Any) -> None:
    ingest_orders_jsonl(session_or_engine=engine, path=orders, now=NOW)
    ingest_events_jsonl(session_or_engine=engine, path=events, now=NOW, **options)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return (write_jsonl(tmp_path / "events.jsonl", generated_lines()),
            write_jsonl(tmp_path / "orders.jsonl", _orders()))


def test_bulk_stores_the_same_tables_as_the_per_batch_and_per_event_paths(
        ledger_engine: Engine, ledger_url: str, tmp_path: Path, files: tuple[Path, Path]) -> None:
    events, orders = files
    # Small batches and transactions, so that batches and commits fall across repeated lines,
    # repeated event ids, shared deliveries and orders matched later in the file.
    _load(ledger_engine, events, orders, bulk=True, batch_size=16, commit_every=40)
    bulk = _contents(ledger_engine)
    assert len(bulk["events"]) == 400
    with Session(ledger_engine) as session:
        rebuild_rollups(session)
        session.commit()
    assert _contents(ledger_engine) == bulk  # incremental rollups equal the rebuilt ones

    with _another_ledger(ledger_url, tmp_path) as other:
        _load(other, events, orders, bulk=False, batch_size=16)
        assert _contents(other) == bulk  # every table, ids included
    with _another_ledger(ledger_url, tmp_path) as other:
        _load(other, events, orders, bulk=False, batch_size=1)
        # A batch stores its rows pixel by pixel, so ids follow the file only one line at a time.
        assert _contents(other, skip=GROUPED_BY_BATCH, without_ids=True) == _contents(
            ledger_engine, skip=GROUPED_BY_BATCH, without_ids=True)


def test_a_second_bulk_import_adds_nothing(ledger_engine: Engine, files: tuple[Path, Path]) -> None:
    events, _orders_path = files
    first = ingest_events_jsonl(session_or_engine=ledger_engine, path=events, now=NOW, batch_size=50,
                                commit_every=100)
    before = _contents(ledger_engine)
    again = ingest_events_jsonl(session_or_engine=ledger_engine, path=events, now=NOW, batch_size=50,
                                commit_every=100)
    assert (first.loaded, first.duplicates, len(first.skipped)) == (400, 8, 2)
    assert (again.loaded, again.duplicates, again.skipped) == (0, 408, first.skipped)
    assert _contents(ledger_engine) == before


def test_a_bad_line_in_the_middle_is_reported_by_number_and_nothing_valid_is_lost(
        ledger_engine: Engine, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        event_line(event_time=T0 + timedelta(minutes=i), event_id=f"ev-{i}",
                   delivery=delivered(T0 + timedelta(minutes=i, seconds=5))) for i in range(30)]
    lines[14] = '{"pixel_id": "' + PIXEL + '", "event": {"event_name": "Purchase", '  # cut short
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    report = ingest_events_jsonl(session_or_engine=ledger_engine, path=path, batch_size=4, commit_every=8)
    assert report.skipped == [(15, report.skipped[0][1])]
    assert report.skipped[0][1].startswith("invalid JSON")
    assert (report.lines, report.loaded) == (30, 29)
    with Session(ledger_engine) as session:
        stored = set(session.scalars(select(Event.event_id)))
        links = session.scalar(select(func.count()).select_from(DeliveryEvent))
    assert stored == {f"ev-{i}" for i in range(30) if i != 14}
    assert links == 29


def test_a_crash_leaves_a_consistent_ledger_that_a_rerun_completes(
        ledger_engine: Engine, ledger_url: str, tmp_path: Path, files: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    events, orders = files
    ingest_orders_jsonl(session_or_engine=ledger_engine, path=orders, now=NOW)
    real_store = ingest_module.store_events
    calls = 0

    def failing_store(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        # 30-line batches, a commit every 2: batches 1-6 committed, the 7th stored, not committed.
        if calls == 8:
            raise RuntimeError("injected crash")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "store_events", failing_store)
    with pytest.raises(RuntimeError, match="injected crash"):
        ingest_events_jsonl(session_or_engine=ledger_engine, path=events, now=NOW, batch_size=30,
                            commit_every=60)
    monkeypatch.setattr(ingest_module, "store_events", real_store)

    with Session(ledger_engine) as session:
        stored = session.scalar(select(func.count()).select_from(Event))
        links = session.scalar(select(func.count()).select_from(DeliveryEvent))
        sent = session.scalar(select(func.coalesce(func.sum(Delivery.events_sent), 0)))
    assert 0 < stored < 400  # the committed transactions, nothing of the lost one
    assert links == sent
    partial = _contents(ledger_engine)
    with Session(ledger_engine) as session:
        rebuild_rollups(session)
        session.commit()
    assert _contents(ledger_engine) == partial  # rollups match the rows they summarise

    rerun = ingest_events_jsonl(session_or_engine=ledger_engine, path=events, now=NOW, batch_size=30,
                                commit_every=60)
    assert rerun.loaded == 400 - stored
    with _another_ledger(ledger_url, tmp_path) as clean:
        _load(clean, events, orders, batch_size=30, commit_every=60)
        # Postgres does not hand out again the ids the lost transaction drew: compare without ids.
        assert _contents(ledger_engine, without_ids=True) == _contents(clean, without_ids=True)


def test_progress_is_reported_after_every_batch_up_to_the_whole_file(
        ledger_engine: Engine, files: tuple[Path, Path]) -> None:
    events, _orders_path = files
    seen: list[IngestProgress] = []
    ingest_events_jsonl(session_or_engine=ledger_engine, path=events, now=NOW, batch_size=100,
                        progress=seen.append)
    assert len(seen) >= 4
    assert [p.lines for p in seen] == sorted(p.lines for p in seen)
    assert seen[-1].lines == 410 and seen[-1].fraction == 1.0 and seen[-1].eta_seconds == 0.0
    assert seen[-1].loaded == 400 and seen[-1].skipped == 2
    assert all(0 < p.fraction <= 1 for p in seen)
