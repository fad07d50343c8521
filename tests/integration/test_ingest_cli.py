"""``capi-agent ingest`` through the real CLI app."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from typer.testing import CliRunner

from agent.cli import build_app
from tests.fixtures.db import PIXEL, delivered, event_line, write_jsonl
from tools.ledger.db import make_engine
from tools.ledger.models import Event, Order

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _count(url: str, model: type) -> int:
    engine = make_engine(url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(model))
    engine.dispose()
    return int(count or 0)


def test_ingest_loads_events_and_orders_and_summarises(sqlite_url: str, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [
        event_line(event_time=T0, event_id="o-1", user_data={"em": "Cli.Canary@Example.com"},
                   delivery=delivered(T0)),
        "{broken",
        event_line(event_time=T0, event_id="o-2"),
    ])
    orders = write_jsonl(tmp_path / "orders.jsonl", [
        {"order_id": "o-1", "pixel_id": PIXEL, "created_at": "2026-11-20T10:00:00Z", "value": 3}])
    runner = CliRunner()
    result = runner.invoke(build_app(), ["ingest", str(events), "--orders", str(orders),
                                         "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "events: 2 loaded, 0 already in the ledger, 1 skipped (of 3 lines)" in result.output
    assert "line 2: invalid JSON" in result.output
    assert "raw customer information hashed before storage: em 1" in result.output
    assert "orders: 1 loaded" in result.output
    assert "cli.canary" not in result.output.lower()
    assert (_count(sqlite_url, Event), _count(sqlite_url, Order)) == (2, 1)

    again = runner.invoke(build_app(), ["ingest", str(events), "--database-url", sqlite_url])
    assert again.exit_code == 0
    assert "events: 0 loaded, 2 already in the ledger" in again.output
    assert _count(sqlite_url, Event) == 2


def test_ingest_uses_capi_database_url(sqlite_url: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPI_DATABASE_URL", sqlite_url)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    events = write_jsonl(tmp_path / "events.jsonl", [event_line(event_time=T0)])
    result = CliRunner().invoke(build_app(), ["ingest", str(events)])
    assert result.exit_code == 0, result.output
    assert _count(sqlite_url, Event) == 1


def test_ingest_exits_1_when_every_line_is_bad(sqlite_url: str, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", ["nope", '{"pixel_id": "1"}'])
    result = CliRunner().invoke(build_app(), ["ingest", str(events), "--database-url", sqlite_url])
    assert result.exit_code == 1
    assert "line 1: invalid JSON" in result.output
    assert "line 2: missing event object" in result.output


def test_ingest_rejects_a_bad_country(sqlite_url: str, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [event_line(event_time=T0)])
    result = CliRunner().invoke(build_app(), ["ingest", str(events), "--country", "USA",
                                              "--database-url", sqlite_url])
    assert result.exit_code == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_rate_and_eta_on_a_terminal_only() -> None:
    from agent.commands.ingest import progress_display
    from tools.ledger.ingest import IngestProgress

    with progress_display(io.StringIO()) as update:
        assert update is None  # a pipe or a log file gets only the final report
    terminal = _Terminal()
    with progress_display(terminal) as update:
        assert update is not None
        update(IngestProgress(lines=25_000, loaded=24_990, duplicates=10, skipped=0, position=2_500_000,
                              size=10_000_000, elapsed=2.0))
    shown = terminal.getvalue()
    assert "25,000 lines" in shown and "12,500 events/s" in shown
    assert "ETA 00:06" in shown and "25%" in shown


def test_ingest_without_a_terminal_prints_no_progress(sqlite_url: str, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "events.jsonl", [event_line(event_time=T0)])
    result = CliRunner().invoke(build_app(), ["ingest", str(events), "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "events/s" not in result.output and "ETA" not in result.output
