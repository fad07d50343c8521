"""``capi-agent replay`` runs through the fix graph, like an approval in Slack: it sends with the
pixel's own token (not ``META_ACCESS_TOKEN``), adds ``appsecret_proof`` when ``META_APP_SECRET`` is
set, and leaves the same audit trail (proposed, approved by ``cli:$USER``, executed, verified).

Checked on what a Graph API simulator saw over loopback HTTP: every request's Authorization header
and query parameters are recorded by a thin ASGI wrapper around the simulator app."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from agent.cli import build_app
from tests.fixtures.db import PIXEL
from tests.integration.test_fixes_support import seed
from tools.fixes.planner import list_proposals
from tools.fixes.trail import trail
from tools.ledger.db import make_engine, migrate
from tools.loopback import ThreadedServer
from tools.meta.simulator import SimState, build_simulator_app
from tools.timeutil import floor_hour, to_iso, utcnow

PIXEL_TOKEN = "pixel-own-token"
ENV_TOKEN = "operator-env-token"
APP_SECRET = "app-secret-for-tests"


@dataclass
class SeenRequest:
    method: str
    path: str
    authorization: str | None
    query: dict[str, str]


@dataclass
class RecordingSimulator:
    url: str
    state: SimState
    requests: list[SeenRequest] = field(default_factory=list)

    def event_posts(self) -> list[SeenRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(f"/{PIXEL}/events")]


def recording(app: Any, seen: list[SeenRequest]) -> Any:
    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            seen.append(SeenRequest(scope["method"], scope["path"], headers.get("authorization"),
                                    dict(parse_qsl(scope.get("query_string", b"").decode()))))
        await app(scope, receive, send)
    return wrapper


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[RecordingSimulator]:
    """Both tokens are valid there, so only the record tells which one was used."""
    app_secret = getattr(request, "param", None)
    state = SimState(valid_tokens=[PIXEL_TOKEN, ENV_TOKEN], app_secret=app_secret)
    seen: list[SeenRequest] = []
    with ThreadedServer(recording(build_simulator_app(state), seen), name="sim-recording") as server:
        yield RecordingSimulator(url=server.url, state=state, requests=seen)


def pixels_toml(tmp_path: Path, *, token_env: str | None) -> Path:
    path = tmp_path / "pixels.toml"
    line = f'access_token_env = "{token_env}"\n' if token_env else ""
    path.write_text(f'[[pixels]]\nid = "{PIXEL}"\nname = "Shop"\n{line}')
    return path


def run_replay(url: str, config: Path, *extra: str) -> Any:
    now = utcnow()
    return CliRunner().invoke(build_app(), [
        "replay", "--pixel", PIXEL, "--since", to_iso(now - timedelta(days=1)), "--until", to_iso(now),
        "--database-url", url, "--config", str(config), *extra])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, simulator: RecordingSimulator) -> pytest.MonkeyPatch:
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env file
    for name in ("CAPI_CONFIG", "META_APP_SECRET", "OPENAI_API_KEY", "OPENAI_BASE_URL", "CAPI_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("META_GRAPH_URL", simulator.url)
    monkeypatch.setenv("META_ACCESS_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("META_TOKEN_SHOP", PIXEL_TOKEN)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    return monkeypatch


def test_the_pixels_own_token_wins_over_meta_access_token(
        ledger_engine: Engine, ledger_url: str, simulator: RecordingSimulator, env: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    seed(ledger_engine, 7, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = run_replay(ledger_url, pixels_toml(tmp_path, token_env="META_TOKEN_SHOP"), "--yes")
    assert result.exit_code == 0, result.output
    assert "sent 7, received by Meta 7" in result.output
    assert len(simulator.state.received(PIXEL)) == 7
    [post] = simulator.event_posts()
    assert post.authorization == f"Bearer {PIXEL_TOKEN}"
    assert "appsecret_proof" not in post.query and "access_token" not in post.query
    # Every request of the run (the send and the verification's reads) used the pixel's token.
    assert {r.authorization for r in simulator.requests} == {f"Bearer {PIXEL_TOKEN}"}
    assert PIXEL_TOKEN not in result.output and ENV_TOKEN not in result.output
    with Session(ledger_engine) as session:
        [proposal] = list_proposals(session)
        assert proposal.status == "executed" and proposal.decided_by == "cli:alice"
        assert proposal.verification is not None  # the fix graph's verify step ran
        actions = [(e.action, e.actor) for e in trail(session, proposal.id)]
    assert actions[:2] == [("proposed", "cli:alice"), ("approved", "cli:alice")]
    assert ("executed", "cli:alice") in actions


@pytest.mark.parametrize("simulator", [APP_SECRET], indirect=True)
def test_appsecret_proof_is_sent_when_meta_app_secret_is_set(
        ledger_engine: Engine, ledger_url: str, simulator: RecordingSimulator, env: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    env.setenv("META_APP_SECRET", APP_SECRET)
    seed(ledger_engine, 5, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = run_replay(ledger_url, pixels_toml(tmp_path, token_env="META_TOKEN_SHOP"), "--yes")
    assert result.exit_code == 0, result.output
    assert len(simulator.state.received(PIXEL)) == 5
    [post] = simulator.event_posts()
    expected = hmac.new(APP_SECRET.encode(), PIXEL_TOKEN.encode(), hashlib.sha256).hexdigest()
    assert post.authorization == f"Bearer {PIXEL_TOKEN}"
    assert post.query["appsecret_proof"] == expected
    assert APP_SECRET not in result.output


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_without_a_token_of_its_own_the_pixel_uses_meta_access_token(
        ledger_engine: Engine, ledger_url: str, simulator: RecordingSimulator, env: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    seed(ledger_engine, 3, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = run_replay(ledger_url, pixels_toml(tmp_path, token_env=None), "--yes")
    assert result.exit_code == 0, result.output
    [post] = simulator.event_posts()
    assert post.authorization == f"Bearer {ENV_TOKEN}"


def test_no_token_anywhere_is_an_error_before_anything_is_proposed(
        sqlite_url: str, simulator: RecordingSimulator, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.delenv("META_ACCESS_TOKEN")
    engine = make_engine(sqlite_url)
    migrate(engine)
    seed(engine, 3, event_time=floor_hour(utcnow()) - timedelta(hours=2))
    result = run_replay(sqlite_url, pixels_toml(tmp_path, token_env="META_TOKEN_UNSET"), "--yes")
    assert result.exit_code == 2
    assert "no access token" in result.output
    assert simulator.requests == []
    with Session(engine) as session:
        assert list_proposals(session) == []
    engine.dispose()
