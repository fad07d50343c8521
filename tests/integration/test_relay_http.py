"""The relay over real HTTP: a caller posts to it as to Meta; it forwards with the real GraphClient to
the Graph API simulator (loopback) and records everything in the ledger (SQLite and Postgres)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.fixtures.db import migrated_engine
from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import (
    PIXEL,
    ledger_dump,
    ledger_events,
    make_event,
    sha,
)
from tools.ledger.models import Delivery
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.simulator import Fault, RunningSimulator

JOHN_HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


# SQLite by default; the tests that exercise the ledger's writes also run on Postgres.
BOTH = pytest.mark.parametrize(
    "ledger_engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture
def ledger_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue(f"{getattr(request, 'param', 'sqlite')}_url")
    yield from migrated_engine(url)


def post_json(relay: str, events: list[dict], *, token: str = SIM_TOKEN, **params: str) -> httpx.Response:
    return httpx.post(f"{relay}/v25.0/{PIXEL}/events", json={"data": events, **params},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)


@BOTH
def test_valid_json_batch_is_forwarded_recorded_and_meta_answer_returned(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    response = post_json(relay, [make_event("o-1"), make_event("o-2")])
    assert response.status_code == 200
    body = response.json()
    assert body["events_received"] == 2 and body["fbtrace_id"]
    assert [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)] == ["o-1", "o-2"]
    events = ledger_events(ledger_engine)
    assert [(e.event_id, e.delivery_status, e.attempts) for e in events] == [
        ("o-1", "delivered", 1), ("o-2", "delivered", 1)]
    with Session(ledger_engine) as session:
        delivery = session.scalars(select(Delivery)).one()
    assert (delivery.status, delivery.events_sent) == ("delivered", 2)
    assert delivery.fbtrace_id == body["fbtrace_id"]


def test_sdk_form_batch_with_token_in_query_never_logs_the_token(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    form = {"data": json.dumps([json.dumps(make_event("f-1")), json.dumps(make_event("f-2"))]),
            "partner_agent": "capi-test-sdk", "test_event_code": "TEST123"}
    response = httpx.post(f"{relay}/v26.0/{PIXEL}/events", params={"access_token": SIM_TOKEN}, data=form,
                          timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["events_received"] == 2
    received = meta_sim.state.received(PIXEL)
    assert [item["event"]["event_id"] for item in received] == ["f-1", "f-2"]
    assert {item["test_event_code"] for item in received} == {"TEST123"}
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["delivered", "delivered"]
    assert SIM_TOKEN not in caplog.text


@BOTH
def test_invalid_batch_is_rejected_whole_not_forwarded_and_recorded_failed(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    response = post_json(relay, [make_event("ok-1"), make_event("bad-1", fbc="not-a-click-id")])
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 2804001)
    assert error["error_user_title"] == "Click ID Incorrectly Formatted"
    assert error["error_user_msg"] and error["fbtrace_id"]
    assert meta_sim.state.received(PIXEL) == []
    events = ledger_events(ledger_engine)
    assert [(e.event_id, e.delivery_status, e.last_error_code, e.last_error_subcode) for e in events] == [
        ("ok-1", "failed", 100, 2804001), ("bad-1", "failed", 100, 2804001)]
    assert events[1].flags.get("malformed") == ["fbc"]


@BOTH
def test_repair_mode_hashes_raw_pii_before_it_leaves_and_drops_bad_fbc(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine,
        caplog: pytest.LogCaptureFixture) -> None:
    with Session(ledger_engine) as session:
        sync_pixels(session, [PixelConfig(id=PIXEL, relay_mode="repair")])
        session.commit()
    caplog.set_level(logging.DEBUG)
    event = make_event("r-1", em=" John_Smith@gmail.com ", fbc="broken")
    response = post_json(relay, [event])
    assert response.status_code == 200, response.text
    sent = meta_sim.state.received(PIXEL)[0]["event"]["user_data"]
    assert sent["em"] == JOHN_HASH and "fbc" not in sent
    stored = ledger_events(ledger_engine)[0]
    assert stored.payload["user_data"]["em"] == JOHN_HASH and stored.flags["raw"] == ["em"]
    assert "john_smith" not in ledger_dump(ledger_engine).lower()
    assert "john_smith" not in caplog.text.lower()


def test_observe_mode_forwards_as_received_but_never_stores_or_logs_raw_pii(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "canary.7f3a@example.com"
    response = post_json(relay, [make_event("c-1", em=canary)])
    assert response.status_code == 200, response.text
    assert meta_sim.state.received(PIXEL)[0]["event"]["user_data"]["em"] == canary  # as received
    stored = ledger_events(ledger_engine)[0]
    assert stored.payload["user_data"]["em"] == sha(canary) and stored.flags["raw"] == ["em"]
    assert canary not in ledger_dump(ledger_engine)
    assert canary not in caplog.text


def test_wrong_token_gets_metas_190_and_nothing_is_stored_or_forwarded(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    direct = httpx.post(f"{meta_sim.url}/v25.0/{PIXEL}/events", json={"data": [make_event("d-0")]},
                        headers={"Authorization": "Bearer wrong-token-123"}, timeout=10)
    response = post_json(relay, [make_event("t-1")], token="wrong-token-123")
    assert response.status_code == direct.status_code == 400
    error, expected = response.json()["error"], direct.json()["error"]
    same = ("code", "error_subcode", "type", "error_user_title", "error_user_msg")
    assert {k: error.get(k) for k in same} == {k: expected.get(k) for k in same}
    assert error["fbtrace_id"]
    # A token that is not the pixel's is refused by the relay itself (tests/integration/test_relay_access.py): the
    # operator's own expired token is what gets recorded as failed with 190.
    assert ledger_events(ledger_engine) == [] and meta_sim.state.received(PIXEL) == []


@BOTH
@pytest.mark.parametrize("mode,code", [("unavailable", None), ("rate_limit", 17)],
                         ids=["unavailable", "rate_limited"])
def test_meta_down_queues_and_answers_200(relay: str, meta_sim: RunningSimulator, ledger_engine: Engine,
                                          mode: str, code: int | None) -> None:
    meta_sim.state.add_fault(Fault(mode=mode, remaining=2, endpoint="events", code=code))  # type: ignore[arg-type]
    for batch in (["q-1", "q-2"], ["q-3"]):
        response = post_json(relay, [make_event(event_id) for event_id in batch])
        assert response.status_code == 200
        assert response.json() == {"events_received": len(batch), "fbtrace_id": None, "messages": [
            f"capi-agent: Meta unavailable, {len(batch)} events queued for delivery"]}
    assert meta_sim.state.received(PIXEL) == []
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["pending"] * 3
    with Session(ledger_engine) as session:
        assert session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.status == "pending")) == 2


@pytest.mark.parametrize("body,content_type", [
    (b"{not json", "application/json"),
    (b'{"access_token": "x"}', "application/json"),
    (b'{"data": {"event_name": "Purchase"}}', "application/json"),
])
def test_malformed_requests_get_metas_400_and_record_nothing(
        relay: str, ledger_engine: Engine, body: bytes, content_type: str) -> None:
    response = httpx.post(f"{relay}/v25.0/{PIXEL}/events", content=body, timeout=10,
                          headers={"Content-Type": content_type, "Authorization": f"Bearer {SIM_TOKEN}"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100 and error["message"].startswith("(#100)")
    assert ledger_events(ledger_engine) == []


def test_more_than_1000_events_rejected_and_nothing_recorded(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    response = post_json(relay, [make_event(f"m-{i}") for i in range(1001)])
    assert response.status_code == 400
    assert "1000" in response.json()["error"]["message"]
    assert ledger_events(ledger_engine) == [] and meta_sim.state.received(PIXEL) == []


def test_wrong_token_message_reaches_the_caller_verbatim(relay: str, meta_sim: RunningSimulator) -> None:
    response = post_json(relay, [make_event("t-2")], token="wrong-token-123")
    assert response.json()["error"]["message"] == "Invalid OAuth access token - Cannot parse access token"


def test_test_event_code_on_relayed_production_traffic_is_a_payload_finding(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    """Meta takes test_event_code once per request, not per event: the relay counts it for each of the
    request's events as ingest does, so the payload check reports relayed test traffic too (masked)."""
    from datetime import timedelta

    from tools.checks.payload_quality import check_payload
    from tools.checks.types import AuditInputs
    from tools.ledger.payload import load_payload_hours
    from tools.timeutil import floor_hour, utcnow

    window = floor_hour(utcnow()) - timedelta(hours=1)
    at = window + timedelta(minutes=20)
    response = post_json(relay, [make_event(f"t-{i}", at=at) for i in range(24)], test_event_code="TEST55501")
    assert response.status_code == 200, response.text
    assert {item["test_event_code"] for item in meta_sim.state.received(PIXEL)} == {"TEST55501"}
    assert post_json(relay, [make_event(f"p-{i}", at=at) for i in range(6)]).status_code == 200
    with Session(ledger_engine) as session:
        hours = load_payload_hours(session, pixel_id=PIXEL, window_end=window + timedelta(hours=1))
    inputs = AuditInputs(pixel_id=PIXEL, window_start=window, window_end=window + timedelta(hours=1),
                         history_start=window - timedelta(weeks=4), event_hours=(), delivery_hours=(),
                         payload_hours=hours)
    [finding] = [f for f in check_payload(inputs) if f.code == "payload.test_event_code"]
    assert (finding.metrics["count"], finding.metrics["events"]) == (24, 30)
    assert any("test_event_code TE***(9)" in line for line in finding.evidence)
    assert "TEST55501" not in json.dumps(finding.model_dump(mode="json"))


@BOTH
def test_repair_mode_repairs_event_time_in_ms_value_as_text_and_a_missing_currency(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    """What Meta accepts but cannot use, repaired where the intent is certain; the ledger keeps what Meta
    got. user_data numbers become strings (zp is hashed from "94035"); a boolean, meaningless, is dropped."""
    with Session(ledger_engine) as session:
        sync_pixels(session, [PixelConfig(id=PIXEL, relay_mode="repair", default_currency="eur")])
        session.commit()
    event = make_event("r-ms", zp=94035, external_id=True)
    seconds = event["event_time"]
    event.update(event_time=seconds * 1000 + 250, custom_data={"value": "19.99", "order_id": "r-ms"})
    comma = make_event("r-comma")
    comma["custom_data"] = {"value": "19,99", "currency": "usd"}
    response = post_json(relay, [event, comma])
    assert response.status_code == 200, response.text
    sent, sent_comma = (item["event"] for item in meta_sim.state.received(PIXEL))
    assert sent["event_time"] == seconds
    assert sent["custom_data"] == {"value": 19.99, "order_id": "r-ms", "currency": "EUR"}
    assert sent["user_data"]["zp"] == [sha("94035")] or sent["user_data"]["zp"] == sha("94035")
    assert "external_id" not in sent["user_data"]
    # Not a plain decimal: which separator was meant is not guessed, and a sent currency is kept.
    assert sent_comma["custom_data"] == {"value": "19,99", "currency": "usd"}
    stored, stored_comma = ledger_events(ledger_engine)
    assert stored.payload["event_time"] == seconds and stored.payload["custom_data"]["value"] == 19.99
    assert "pq" not in stored.flags.get("payload", {})  # nothing left for the payload check to report
    assert set(stored_comma.flags["payload"]["pq"]) == {"purchase_value_text"}


def test_observe_mode_repairs_nothing(relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        sync_pixels(session, [PixelConfig(id=PIXEL, default_currency="EUR")])
        session.commit()
    event = make_event("o-text")
    event["custom_data"] = {"value": "19.99"}
    assert post_json(relay, [event]).status_code == 200
    assert meta_sim.state.received(PIXEL)[0]["event"]["custom_data"] == {"value": "19.99"}
    assert set(ledger_events(ledger_engine)[0].flags["payload"]["pq"]) == {"purchase_value_text",
                                                                          "purchase_no_currency"}
