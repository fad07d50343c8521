"""``capi-agent replay``: --dry-run shows the preview and sends nothing; --yes approves as cli:$USER,
sends to META_GRAPH_URL and prints the result."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session
from typer.testing import CliRunner

from agent.cli import build_app
from tests.fixtures.db import PIXEL
from tests.fixtures.meta import SIM_TOKEN
from tests.test_fixes_support import seed
from tools.fixes.planner import list_proposals
from tools.fixes.trail import trail
from tools.ledger.db import make_engine, migrate
from tools.meta.simulator import RunningSimulator
from tools.timeutil import floor_hour, to_iso, utcnow


@pytest.fixture
def ledger(sqlite_url: str) -> Engine:
    engine = make_engine(sqlite_url)
    migrate(engine)
    return engine


def _args(url: str, *extra: str) -> list[str]:
    now = utcnow()
    return ["replay", "--pixel", PIXEL, "--since", to_iso(now - timedelta(days=1)), "--until", to_iso(now),
            "--database-url", url, *extra]


def test_dry_run_prints_the_preview_and_sends_nothing(ledger: Engine, sqlite_url: str,
                                                      meta_sim: RunningSimulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    seed(ledger, 12, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url, "--dry-run", "--event", "Purchase"))
    assert result.exit_code == 0, result.output
    assert "12 events in 1 request(s)" in result.output and "dry run: nothing sent" in result.output
    assert meta_sim.state.received(PIXEL) == []
    with Session(create_engine(sqlite_url)) as session:
        assert list_proposals(session) == []


def test_yes_approves_as_the_cli_user_and_sends(ledger: Engine, sqlite_url: str, meta_sim: RunningSimulator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    seed(ledger, 12, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url, "--yes"))
    assert result.exit_code == 0, result.output
    assert "sent 12, received by Meta 12" in result.output
    assert SIM_TOKEN not in result.output
    assert len(meta_sim.state.received(PIXEL)) == 12
    with Session(create_engine(sqlite_url)) as session:
        [proposal] = list_proposals(session)
        assert proposal.status == "executed" and proposal.decided_by == "cli:alice"
        assert [e.action for e in trail(session, proposal.id)][:2] == ["proposed", "approved"]


def test_declining_at_the_prompt_sends_nothing(ledger: Engine, sqlite_url: str, meta_sim: RunningSimulator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    seed(ledger, 3, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url), input="n\n")
    assert result.exit_code == 1
    assert meta_sim.state.received(PIXEL) == []
    with Session(create_engine(sqlite_url)) as session:
        assert [p.status for p in list_proposals(session)] == ["rejected"]
