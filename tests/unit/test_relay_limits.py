"""A relay that bad input cannot break: over real HTTP, each malformed request gets Meta's 400 (code 100,
Meta's error shape), nothing is stored or forwarded, and valid requests around it go through."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import PIXEL, ledger_events, make_event
from tools.meta.simulator import RunningSimulator
from tools.relay.limits import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_NAME_CHARS,
    MAX_ID_CHARS,
    MAX_STRING_CHARS,
)

AUTH = {"Authorization": f"Bearer {SIM_TOKEN}"}


def with_event(**fields: Any) -> bytes:
    return json.dumps({"data": [{**make_event("bad-1"), **fields}]}).encode()


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def custom_nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"k": value}
    return value


def lone_surrogate_body() -> bytes:
    # json.dumps escapes the surrogate as \ud800, exactly what a buggy sender's JSON encoder writes.
    return json.dumps({"data": [{**make_event("bad-1"), "event_name": "Purchase\ud800"}]}).encode()


def form_surrogate_body() -> bytes:
    event = json.dumps({**make_event("bad-1"), "event_name": "Purchase\ud800"})
    return httpx.QueryParams({"data": json.dumps([event])}).__str__().encode()


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# (id, body, content type): every one of these once answered a 500 or was accepted and forwarded.
BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("event_time_1e30", with_event(event_time=10**30), JSON),
    ("event_time_huge_digit_string", with_event(event_time="9" * 40), JSON),
    ("event_time_negative", with_event(event_time=-5), JSON),
    ("body_nested_5000", ('{"data": ' + nested(5000) + "}").encode(), JSON),
    ("form_data_nested_5000", b"data=" + nested(5000).encode(), FORM),
    ("custom_data_too_deep", with_event(custom_data=custom_nested(MAX_DEPTH)), JSON),
    ("lone_surrogate_event_name_json", lone_surrogate_body(), JSON),
    ("lone_surrogate_event_name_form", form_surrogate_body(), FORM),
    ("nul_in_event_name", with_event(event_name="Pur\x00chase"), JSON),
    ("event_name_2mb", with_event(event_name="P" * 2_000_000), JSON),
    ("event_name_over_limit", with_event(event_name="P" * (MAX_EVENT_NAME_CHARS + 1)), JSON),
    ("event_id_over_limit", with_event(event_id="e" * (MAX_ID_CHARS + 1)), JSON),
    ("order_id_over_limit", with_event(custom_data={"order_id": "o" * (MAX_ID_CHARS + 1)}), JSON),
    ("string_over_limit", with_event(event_source_url="https://x/" + "a" * MAX_STRING_CHARS), JSON),
    ("event_over_size", with_event(custom_data={"contents": [{"id": "x" * 1000}] * (MAX_EVENT_BYTES // 1000)}),
     JSON),
    ("nan_value", with_event().replace(b'"value": 42.5', b'"value": NaN'), JSON),
    ("infinite_value", with_event().replace(b'"value": 42.5', b'"value": 1e999'), JSON),
    ("data_not_json", b"data=%5B%7Bnope", FORM),
]


def post(relay: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(f"{relay}/v25.0/{PIXEL}/events", content=body, timeout=30,
                      headers={**AUTH, "Content-Type": content_type})


def assert_metas_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["type"] == "OAuthException" and error["code"] == 100
    assert error["message"].startswith("(#100)") and error["fbtrace_id"]


@pytest.mark.parametrize("body,content_type", [(b, c) for _, b, c in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
def test_bad_request_gets_metas_400_and_nothing_is_stored_or_forwarded(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine, body: bytes, content_type: str) -> None:
    assert_metas_400(post(relay, body, content_type))
    assert ledger_events(ledger_engine) == []
    assert meta_sim.state.received(PIXEL) == []


def test_body_over_the_limit_is_refused_by_content_length_and_while_streaming(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    big = b'{"data": [], "pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    assert_metas_400(post(relay, big, JSON))

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"pad": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(f"{relay}/v25.0/{PIXEL}/events", content=chunks(), timeout=30,
                          headers={**AUTH, "Content-Type": JSON})
    assert_metas_400(response)
    assert "larger than" in response.json()["error"]["message"]
    assert ledger_events(ledger_engine) == [] and meta_sim.state.received(PIXEL) == []


def test_within_the_limits_is_accepted(relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    event = {**make_event("edge-1"), "event_name": "P" * MAX_EVENT_NAME_CHARS,
             "custom_data": {"order_id": "o" * MAX_ID_CHARS, "nested": custom_nested(MAX_DEPTH - 6)}}
    response = post(relay, json.dumps({"data": [event]}).encode(), JSON)
    assert response.status_code == 200, response.text
    assert [e.event_id for e in ledger_events(ledger_engine)] == ["edge-1"]


def test_valid_traffic_between_bad_requests_is_unaffected(
        relay: str, meta_sim: RunningSimulator, ledger_engine: Engine) -> None:
    sent = []
    for index, (_name, body, content_type) in enumerate(BAD_REQUESTS):
        assert_metas_400(post(relay, body, content_type))
        event_id = f"good-{index}"
        response = httpx.post(f"{relay}/v25.0/{PIXEL}/events", json={"data": [make_event(event_id)]},
                              headers=AUTH, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["events_received"] == 1
        sent.append(event_id)
    assert [e.event_id for e in ledger_events(ledger_engine)] == sent
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["delivered"] * len(sent)
    assert [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)] == sent


ODD_EVENTS: list[dict[str, Any]] = [
    {**make_event("odd-1"), "action_source": ["website"]},
    {**make_event("odd-2"), "action_source": {"a": 1}},
    {**make_event("odd-3"), "user_data": ["em"]},
    {**make_event("odd-4"), "event_id": {"id": 1}},
    {**make_event("odd-5"), "custom_data": {"order_id": [1, 2], "value": "lots", "contents": "x"}},
    {**make_event("odd-6"), "event_name": 42},
    {**make_event("odd-7"), "event_time": "soon"},
]


@pytest.mark.parametrize("event", ODD_EVENTS, ids=[e["event_id"] if isinstance(e["event_id"], str) else "odd-4"
                                                   for e in ODD_EVENTS])
def test_fields_of_the_wrong_type_get_metas_answer_never_a_500(relay: str, event: dict[str, Any]) -> None:
    response = httpx.post(f"{relay}/v25.0/{PIXEL}/events", json={"data": [event]}, headers=AUTH, timeout=10)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["code"] == 100 and error["type"] == "OAuthException" and error["fbtrace_id"]
