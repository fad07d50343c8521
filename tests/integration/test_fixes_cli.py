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
from tests.integration.test_fixes_support import seed
from tools.fixes.planner import list_proposals
from tools.fixes.trail import trail
from tools.ledger.db import make_engine, migrate
from tools.ledger.pixels import ensure_pixels
from tools.meta.simulator import RunningSimulator
from tools.timeutil import floor_hour, to_iso, utcnow


def _args(url: str, *extra: str) -> list[str]:
    now = utcnow()
    return ["replay", "--pixel", PIXEL, "--since", to_iso(now - timedelta(days=1)), "--until", to_iso(now),
            "--database-url", url, *extra]


def test_dry_run_prints_the_preview_and_sends_nothing(sqlite_engine: Engine, sqlite_url: str,
                                                      meta_sim: RunningSimulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    seed(sqlite_engine, 12, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url, "--dry-run", "--event", "Purchase"))
    assert result.exit_code == 0, result.output
    assert "12 events in 1 request(s)" in result.output and "dry run: nothing sent" in result.output
    assert meta_sim.state.received(PIXEL) == []
    with Session(create_engine(sqlite_url)) as session:
        assert list_proposals(session) == []


def test_yes_approves_as_the_cli_user_and_sends(sqlite_engine: Engine, sqlite_url: str, meta_sim: RunningSimulator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    seed(sqlite_engine, 12, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url, "--yes"))
    assert result.exit_code == 0, result.output
    assert "sent 12, received by Meta 12" in result.output
    assert SIM_TOKEN not in result.output
    assert len(meta_sim.state.received(PIXEL)) == 12
    with Session(create_engine(sqlite_url)) as session:
        [proposal] = list_proposals(session)
        assert proposal.status == "executed" and proposal.decided_by == "cli:alice"
        assert [e.action for e in trail(session, proposal.id)][:2] == ["proposed", "approved"]


def test_declining_at_the_prompt_sends_nothing(sqlite_engine: Engine, sqlite_url: str, meta_sim: RunningSimulator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    seed(sqlite_engine, 3, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = CliRunner().invoke(build_app(), _args(sqlite_url), input="n\n")
    assert result.exit_code == 1
    assert meta_sim.state.received(PIXEL) == []
    with Session(create_engine(sqlite_url)) as session:
        assert [p.status for p in list_proposals(session)] == ["rejected"]


# --- capi-agent fixes list | show | release-uncertain ------------------------------------------------

def uncertain_fix(engine: Engine, sim: RunningSimulator, events: int = 6) -> str:
    """An executed replay whose only request timed out: its chunk is uncertain, Meta got nothing."""
    from tests.integration.test_fixes_support import approved, sessions
    from tools.fixes.execute import execute_fix
    from tools.meta.client import GraphClient
    from tools.meta.simulator import Fault

    now = utcnow()
    seed(engine, events, event_time=floor_hour(now) - timedelta(hours=2))
    with Session(engine) as session:  # as ingest and the relay do for every pixel they see
        ensure_pixels(session, [PIXEL])
        session.commit()
    proposal_id = approved(engine, at=now, params={"since": to_iso(now - timedelta(days=1)),
                                                   "until": to_iso(now)})
    sim.state.add_fault(Fault(mode="timeout", endpoint="events", delay_seconds=1.0))
    with GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=0.3, max_retries=0,
                     sleep=lambda _s: None) as client:
        result = execute_fix(sessions(engine), proposal_id=proposal_id, client=client, at=now)
    assert (result.uncertain, result.sent, result.finished) == (events, 0, True)
    assert sim.state.received(PIXEL) == []
    return proposal_id


@pytest.fixture
def fix_env(monkeypatch: pytest.MonkeyPatch, meta_sim: RunningSimulator) -> pytest.MonkeyPatch:
    monkeypatch.delenv("CAPI_CONFIG", raising=False)
    monkeypatch.delenv("META_APP_SECRET", raising=False)
    monkeypatch.setenv("META_GRAPH_URL", meta_sim.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    return monkeypatch


def test_fixes_list_filters_and_flags_uncertain_chunks(sqlite_engine: Engine, sqlite_url: str,
                                                       meta_sim: RunningSimulator,
                                                       fix_env: pytest.MonkeyPatch) -> None:
    proposal_id = uncertain_fix(sqlite_engine, meta_sim)
    app = build_app()
    listed = CliRunner().invoke(app, ["fixes", "list", "--database-url", sqlite_url])
    assert listed.exit_code == 0, listed.output
    assert proposal_id in listed.output and "executed by U123, 1 uncertain chunk(s)" in listed.output
    assert "6 events" in listed.output
    executed = CliRunner().invoke(app, ["fixes", "list", "--status", "executed", "--pixel", PIXEL,
                                        "--database-url", sqlite_url, "--format", "json"])
    [row] = __import__("json").loads(executed.output)
    assert row["id"] == proposal_id and row["uncertain_chunks"] == 1 and row["total_events"] == 6
    for extra in (["--status", "proposed"], ["--pixel", "999"]):
        empty = CliRunner().invoke(app, ["fixes", "list", "--database-url", sqlite_url, *extra])
        assert empty.exit_code == 0 and empty.output.startswith("no fix proposals")


def test_fixes_show_prints_preview_status_chunks_and_trail(sqlite_engine: Engine, sqlite_url: str,
                                                           meta_sim: RunningSimulator,
                                                           fix_env: pytest.MonkeyPatch) -> None:
    proposal_id = uncertain_fix(sqlite_engine, meta_sim)
    shown = CliRunner().invoke(build_app(), ["fixes", "show", proposal_id, "--database-url", sqlite_url])
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert f"{proposal_id}: replay for pixel {PIXEL}, executed" in out
    assert "6 events in 1 request(s)" in out  # the preview
    assert "uncertain 6" in out and "#0 uncertain: 6 planned, 6 sent" in out
    assert f"capi-agent fixes release-uncertain {proposal_id} --by NAME" in out
    trail_lines = out.split("trail:")[1]
    for action in ("proposed", "approved", "execution_started", "chunk_uncertain", "executed"):
        assert action in trail_lines
    missing = CliRunner().invoke(build_app(), ["fixes", "show", "fix_nope", "--database-url", sqlite_url])
    assert missing.exit_code == 2


def test_release_uncertain_records_the_person_and_resends_through_the_fix_run(
        ledger_url: str, meta_sim: RunningSimulator, fix_env: pytest.MonkeyPatch) -> None:
    engine = make_engine(ledger_url)
    migrate(engine)
    try:
        proposal_id = uncertain_fix(engine, meta_sim)
        result = CliRunner().invoke(build_app(), ["fixes", "release-uncertain", proposal_id, "--by", "bob",
                                                  "--yes", "--database-url", ledger_url])
        assert result.exit_code == 0, result.output
        assert "released chunk(s) #0 by cli:bob" in result.output
        assert "sent 6, received by Meta 6" in result.output
        assert len(meta_sim.state.received(PIXEL)) == 6
        with Session(engine) as session:
            [proposal] = list_proposals(session)
            assert proposal.status == "executed" and proposal.result is not None
            assert (proposal.result.sent, proposal.result.uncertain) == (6, 0)
            entries = [(e.action, e.actor) for e in trail(session, proposal_id)]
        assert ("uncertain_released", "cli:bob") in entries
        assert entries.index(("uncertain_released", "cli:bob")) < len(entries) - 1  # then it ran
        # Released once: a second call has nothing to release and sends nothing.
        again = CliRunner().invoke(build_app(), ["fixes", "release-uncertain", proposal_id, "--by", "bob",
                                                 "--yes", "--database-url", ledger_url])
        assert again.exit_code == 0 and "nothing to release" in again.output
        assert len(meta_sim.state.received(PIXEL)) == 6
    finally:
        engine.dispose()


def test_release_uncertain_declined_at_the_prompt_changes_nothing(sqlite_engine: Engine, sqlite_url: str,
                                                                  meta_sim: RunningSimulator,
                                                                  fix_env: pytest.MonkeyPatch) -> None:
    proposal_id = uncertain_fix(sqlite_engine, meta_sim)
    result = CliRunner().invoke(build_app(), ["fixes", "release-uncertain", proposal_id, "--by", "bob",
                                              "--database-url", sqlite_url], input="n\n")
    assert result.exit_code == 1 and "6 uncertain event(s)" in result.output
    assert meta_sim.state.received(PIXEL) == []
    with Session(sqlite_engine) as session:
        assert "uncertain_released" not in [e.action for e in trail(session, proposal_id)]


def test_the_replay_points_at_the_command_for_uncertain_events(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.commands.replay import print_outcome

    print_outcome({"result": {"sent": 0, "received": 0, "skipped": 0, "failed": 0, "uncertain": 4,
                              "requests": 1, "errors": {}, "finished": True}}, "fix_abc")
    out = capsys.readouterr().out
    assert "capi-agent fixes release-uncertain fix_abc --by NAME" in out
    assert "tools.fixes" not in out and "release_uncertain" not in out


def test_release_uncertain_without_a_token_releases_nothing(sqlite_engine: Engine, sqlite_url: str,
                                                            meta_sim: RunningSimulator,
                                                            fix_env: pytest.MonkeyPatch) -> None:
    proposal_id = uncertain_fix(sqlite_engine, meta_sim)
    fix_env.delenv("META_ACCESS_TOKEN")
    result = CliRunner().invoke(build_app(), ["fixes", "release-uncertain", proposal_id, "--by", "bob",
                                              "--yes", "--database-url", sqlite_url])
    assert result.exit_code == 2 and "No Meta access token" in result.output
    with Session(sqlite_engine) as session:
        assert "uncertain_released" not in [e.action for e in trail(session, proposal_id)]
        [proposal] = list_proposals(session)
        assert proposal.status == "executed"
