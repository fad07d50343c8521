"""A relay only the shop's own senders can use, over real HTTP against the Graph API simulator: a
stranger's requests get Meta's 190 and are counted, never stored, audited or replayed; relay keys
(stored hashed) stand in for the token; unconfigured pixels only on opt-in, never with the operator's
token; a per-source rate limit; and the operator's own expired token still shows as a token failure."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from agent.cli import build_app
from agent.relay.app import forward_pending_with_wiring
from agent.settings import load_settings
from agent.wiring import AgentWiring
from tests.fixtures.db import migrated_engine
from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import (
    PIXEL,
    ledger_dump,
    ledger_events,
    make_event,
    running_relay,
)
from tools.audit.runner import audit_pixel
from tools.fixes.preview import build_preview
from tools.fixes.types import ALL_UNDELIVERED
from tools.ledger.models import Delivery, DeliveryHourRollup, Event, Pixel, RelayKey, RelayRefusal
from tools.ledger.pixels import PixelConfig, list_pixels
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator
from tools.relay.access import RelayAuth
from tools.relay.keys import issue_key, key_matches, revoke_key
from tools.relay.ratelimit import RateLimiter
from tools.timeutil import floor_hour, to_iso, utcnow

STRANGER = "EAAmadeUpToken123"
OTHER_PIXEL = "9988776655"


def post(relay: str, events: list[dict], *, token: str | None, pixel: str = PIXEL,
         in_query: bool = False) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token and not in_query else {}
    params = {"access_token": token} if token and in_query else {}
    return httpx.post(f"{relay}/v25.0/{pixel}/events", json={"data": events}, params=params, headers=headers,
                      timeout=20)


def purchase(event_id: str) -> dict:
    event = make_event(event_id)
    event["custom_data"] = {"currency": "USD", "value": 9999.0, "order_id": event_id}
    return event


def refusals(engine: Engine) -> list[tuple[str, str, str, int, int]]:
    with Session(engine) as session:
        return [(r.pixel_id, r.source, r.reason, r.requests, r.events) for r in session.scalars(
            select(RelayRefusal).order_by(RelayRefusal.pixel_id, RelayRefusal.reason))]


def assert_190(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]


def test_strangers_300_purchases_are_refused_counted_and_never_stored_audited_or_replayed(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine, graph_client: GraphClient) -> None:
    assert post(relay, [make_event("own-1"), make_event("own-2")], token=SIM_TOKEN).status_code == 200
    for batch in range(3):
        response = post(relay, [purchase(f"fake-{batch}-{i}") for i in range(100)], token=STRANGER,
                        in_query=batch == 1)
        assert_190(response)
        assert post(relay, [make_event(f"own-{batch + 3}")], token=SIM_TOKEN).status_code == 200
    own = ["own-1", "own-2", "own-3", "own-4", "own-5"]
    assert [e.event_id for e in ledger_events(ledger_engine)] == own
    assert [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)] == own
    assert refusals(ledger_engine) == [(PIXEL, "127.0.0.1", "bad_token", 3, 300)]
    dump = ledger_dump(ledger_engine)
    assert "fake-" not in dump and "9999" not in dump and STRANGER not in dump
    with Session(ledger_engine) as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "failed")) == 0
        errors = [row.errors for row in session.scalars(select(DeliveryHourRollup))]
    assert all("190/" not in key for row in errors for key in row)

    # The next audit: no token incident against the operator's healthy token, one info finding.
    at = floor_hour(utcnow()) + timedelta(hours=1, minutes=5)
    with Session(ledger_engine) as session:
        audit = audit_pixel(session, pixel=PixelConfig(id=PIXEL), at=at, client=graph_client, store=False)
    codes = {f.code: f for f in audit.findings}
    assert "delivery.token_invalid" not in codes
    refused = codes["relay.refused_requests"]
    assert refused.severity == "info" and refused.metrics["refused_requests"] == 3
    assert refused.metrics["refused_events"] == 300 and refused.metrics["top_source"] == "127.0.0.1"
    assert not [i for i in audit.incidents if i.root_cause == "access_token_invalid"]
    # Nothing of theirs to replay.
    with Session(ledger_engine) as session:
        preview = build_preview(session, pixel_id=PIXEL, kind="replay", at=utcnow(), params={
            "since": to_iso(utcnow() - timedelta(days=1)), "until": to_iso(utcnow() + timedelta(hours=1)),
            "event_names": [], "statuses": list(ALL_UNDELIVERED)})
    assert preview.total_events == 0


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_operators_own_expired_token_is_recorded_as_metas_190(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    meta_sim.state.add_tokens(expired=["EAAoperatorExpired"])
    with running_relay(ledger_engine, meta_sim.url, auth=RelayAuth.static({PIXEL: "EAAoperatorExpired"})) as url:
        response = post(url, [make_event("exp-1")], token="EAAoperatorExpired")
    assert_190(response)
    assert response.json()["error"]["error_subcode"] == 463
    events = ledger_events(ledger_engine)
    assert [(e.event_id, e.delivery_status, e.last_error_code) for e in events] == [("exp-1", "failed", 190)]
    with Session(ledger_engine) as session:
        errors = session.scalars(select(DeliveryHourRollup)).one().errors
    assert errors == {"190/463": 1}
    assert refusals(ledger_engine) == []


def test_relay_key_stands_in_for_the_token_is_stored_hashed_and_can_be_revoked(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        key, row = issue_key(session, pixel_id=PIXEL, now=utcnow(), label="shop plug-in")
        other_key, _ = issue_key(session, pixel_id=OTHER_PIXEL, now=utcnow())
        session.commit()
        key_id = row.id
    response = post(relay, [make_event("k-1")], token=key, in_query=True)
    assert response.status_code == 200, response.text
    # Forwarded with the pixel's configured token: the simulator accepts only that one.
    assert [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)] == ["k-1"]
    assert key not in ledger_dump(ledger_engine)
    with Session(ledger_engine) as session:
        assert session.scalar(select(RelayKey.key_hash).where(RelayKey.id == key_id)) != key
    assert_190(post(relay, [make_event("k-2")], token=other_key))  # another pixel's key
    with Session(ledger_engine) as session:
        assert revoke_key(session, key_id=key_id, now=utcnow())
        session.commit()
    assert_190(post(relay, [make_event("k-3")], token=key))
    assert [e.event_id for e in ledger_events(ledger_engine)] == ["k-1"]
    assert [(r[2], r[3]) for r in refusals(ledger_engine)] == [("bad_token", 2)]


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_relay_key_for_a_pixel_without_a_token_is_told_to_retry_never_queued(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    # Nothing could ever forward these events (forward_pending sends only with the pixel's token), so
    # a "queued" 200 would be a promise the relay cannot keep: a transient 503, nothing stored.
    with Session(ledger_engine) as session:
        key, _ = issue_key(session, pixel_id=PIXEL, now=utcnow())
        session.commit()
    with running_relay(ledger_engine, meta_sim.url, auth=RelayAuth.static({PIXEL: None})) as url:
        response = post(url, [make_event("w-1")], token=key)
    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["code"], error["is_transient"]) == (2, True) and "no Meta access token" in error["message"]
    assert ledger_events(ledger_engine) == []
    assert meta_sim.state.received(PIXEL) == []


def test_unconfigured_pixel_is_refused_by_default(relay: str, meta_sim: RunningSimulator,
                                                  ledger_engine: Engine) -> None:
    assert_190(post(relay, [make_event("u-1")], token=SIM_TOKEN, pixel=OTHER_PIXEL))
    assert ledger_events(ledger_engine) == [] and meta_sim.state.received(OTHER_PIXEL) == []
    assert refusals(ledger_engine) == [(OTHER_PIXEL, "127.0.0.1", "unconfigured_pixel", 1, 1)]
    with Session(ledger_engine) as session:
        assert session.get(Pixel, OTHER_PIXEL) is None


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_unconfigured_pixel_on_opt_in_uses_the_callers_token_and_never_the_operators(
        ledger_engine: Engine, meta_sim: RunningSimulator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    meta_sim.state.add_tokens(valid=["EAAtheirOwnToken"])
    auth = RelayAuth.static({PIXEL: SIM_TOKEN}, accept_unconfigured=True)
    with running_relay(ledger_engine, meta_sim.url, auth=auth) as url:
        response = post(url, [make_event("o-1")], token="EAAtheirOwnToken", pixel=OTHER_PIXEL)
        assert response.status_code == 200, response.text
        assert_190(post(url, [make_event("o-2")], token="EAAwrong", pixel=PIXEL))  # configured: still guarded
    assert [item["event"]["event_id"] for item in meta_sim.state.received(OTHER_PIXEL)] == ["o-1"]
    with Session(ledger_engine) as session:
        marked = {p.id: p for p in list_pixels(session)}[OTHER_PIXEL]
    assert marked.relay_unconfigured
    # The operator's token (META_ACCESS_TOKEN) is never used for that pixel: not by the agent's clients,
    # not by store-and-forward, not by the replay command.
    settings = load_settings(meta_access_token=SIM_TOKEN, meta_graph_url=meta_sim.url)
    wiring = AgentWiring(settings=settings, engine=ledger_engine)
    assert wiring.pixel_token(marked) is None and wiring.graph_client(marked) is None
    assert wiring.pixel_token(PixelConfig(id=PIXEL)) == SIM_TOKEN
    with Session(ledger_engine) as session:
        session.execute(update(Event).values(delivery_status="pending"))  # as if Meta had been down
        session.commit()
    report = forward_pending_with_wiring(wiring)
    assert report.sent == 0 and report.pixels[0].waiting_reason
    monkeypatch.setenv("META_ACCESS_TOKEN", SIM_TOKEN)
    result = CliRunner().invoke(build_app(), [
        "replay", "--pixel", OTHER_PIXEL, "--since", to_iso(utcnow() - timedelta(days=1)),
        "--until", to_iso(utcnow() + timedelta(hours=1)), "--yes",
        "--database-url", str(ledger_engine.url.render_as_string(hide_password=False))])
    assert result.exit_code == 2 and "no access token" in result.output
    assert len(meta_sim.state.received(OTHER_PIXEL)) == 1


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_rate_limit_per_source_answers_metas_code_4_and_is_counted(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=3, clock=lambda: now[0])
    with running_relay(ledger_engine, meta_sim.url, limiter=limiter) as url:
        answers = [post(url, [make_event(f"r-{i}")], token=SIM_TOKEN) for i in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 400, 400]
        error = answers[3].json()["error"]
        assert (error["code"], error["is_transient"], error["type"]) == (4, True, "OAuthException")
        assert int(answers[3].headers["Retry-After"]) >= 1
        now[0] += 2.0  # two seconds later: two more requests
        assert [post(url, [make_event(f"s-{i}")], token=SIM_TOKEN).status_code for i in range(3)] == [
            200, 200, 400]
    assert [e.event_id for e in ledger_events(ledger_engine)] == ["r-0", "r-1", "r-2", "s-0", "s-1"]
    assert [(r[2], r[3]) for r in refusals(ledger_engine)] == [("rate_limited", 1)]


def test_relay_key_cli_prints_the_key_once_and_stores_its_hash(sqlite_url: str) -> None:
    engine = next(migrated_engine(sqlite_url))
    result = CliRunner().invoke(build_app(), ["relay-key", "issue", "--pixel", PIXEL, "--label", "tag server",
                                              "--database-url", sqlite_url])
    assert result.exit_code == 0, result.output
    key = next(line for line in result.output.splitlines() if line.startswith("capirk_"))
    with Session(engine) as session:
        assert key_matches(session, pixel_id=PIXEL, presented=key)
    listed = CliRunner().invoke(build_app(), ["relay-key", "list", "--database-url", sqlite_url])
    assert "tag server" in listed.output and key not in listed.output
    assert key not in json.dumps(ledger_dump(engine))
    engine.dispose()


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_no_token_gets_metas_104_and_is_counted(relay: str, meta_sim: RunningSimulator,
                                                ledger_engine: Engine) -> None:
    response = post(relay, [make_event("n-1")], token=None)
    assert response.status_code == 400 and response.json()["error"]["code"] == 104
    assert ledger_events(ledger_engine) == [] and meta_sim.state.received(PIXEL) == []
    assert refusals(ledger_engine) == [(PIXEL, "127.0.0.1", "bad_token", 1, 1)]


def test_rate_limiter_refills_keeps_sources_apart_and_bounds_its_memory() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, max_sources=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(2)] == [None, None]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") is None  # another sender is not affected
    now[0] += 0.5
    assert limiter.take("a") is None and limiter.take("a") is not None
    for source in ("c", "d", "e"):
        limiter.take(source)
    assert len(limiter._buckets) == 3 and "a" not in limiter._buckets


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_relay_key_gets_the_appsecret_proof_of_the_pixels_token(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    meta_sim.state.app_secret = "app-secret-1"
    with Session(ledger_engine) as session:
        key, _ = issue_key(session, pixel_id=PIXEL, now=utcnow())
        session.commit()
    with running_relay(ledger_engine, meta_sim.url, app_secret="app-secret-1") as url:
        response = httpx.post(f"{url}/v25.0/{PIXEL}/events", timeout=20, json={
            "data": [make_event("p-1")], "access_token": key, "appsecret_proof": "made-with-the-key"})
    assert response.status_code == 200, response.text
    assert [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)] == ["p-1"]


@pytest.mark.parametrize("ledger_engine", ["sqlite"], indirect=True)
def test_an_internal_failure_answers_metas_transient_error(ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    def broken() -> dict:
        raise OSError("database unreachable")

    with running_relay(ledger_engine, meta_sim.url, auth=RelayAuth(pixels=broken)) as url:
        response = post(url, [make_event("i-1")], token=SIM_TOKEN)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["is_transient"], error["type"]) == (2, True, "OAuthException")
    assert ledger_events(ledger_engine) == []
