"""The Graph API simulator over loopback HTTP, as any Conversions API client would see it (SDK-style
form posts, curl-style multipart, JSON), plus its scripting endpoints, state file and quality model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools.meta.simulator import RunningSimulator, SimState, run_simulator_in_thread
from tools.meta.simulator.quality import composite_score, upload_frequency, weighted_median
from tools.timeutil import to_iso, to_unix

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SIM_NOW = NOW  # the clock of the simulator fixture ``sim``
PIXEL = "1234567890"
AUTH = {"Authorization": "Bearer sim-token"}


def event(event_id: str, *, at: datetime = NOW - timedelta(minutes=5), **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_name": "Purchase", "event_time": to_unix(at), "event_id": event_id,
        "action_source": "website", "event_source_url": "https://shop.example/thanks",
        "user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": "Mozilla/5.0",
                      "fbc": "fb.1.1763632000000.AbCdEf"},
    }
    body.update(overrides)
    return body


def stats(sim: RunningSimulator, source: str, **params: Any) -> httpx.Response:
    query = {"aggregation": "event", "event_source": source, "start_time": to_unix(NOW - timedelta(days=1)),
             "end_time": to_unix(NOW), **params}
    return httpx.get(f"{sim.url}/v25.0/{PIXEL}/stats", params=query, headers=AUTH)


def test_sdk_style_form_post_with_token_in_query(sim: RunningSimulator):
    # What facebook-business sends: form-encoded, data = JSON array of JSON-encoded event strings.
    data = json.dumps([json.dumps(event("a")), json.dumps(event("b"))])
    response = httpx.post(f"{sim.url}/v26.0/{PIXEL}/events",
                          params={"access_token": "sim-token"},
                          data={"data": data, "partner_agent": "sdk", "namespace_id": "", "upload_tag": "x"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["events_received"] == 2 and body["messages"] == [] and body["fbtrace_id"]
    assert [item["event"]["event_id"] for item in sim.state.received(PIXEL)] == ["a", "b"]


def test_multipart_and_json_bodies_and_token_locations(sim: RunningSimulator):
    multipart = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events",
                           files={"data": (None, json.dumps([event("m")])),
                                  "access_token": (None, "sim-token")})
    json_body = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events",
                           json={"data": [event("j")], "access_token": "sim-token"})
    oauth_header = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("o")]},
                              headers={"Authorization": "OAuth sim-token"})
    no_token = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("n")]})

    assert [r.status_code for r in (multipart, json_body, oauth_header)] == [200, 200, 200]
    assert no_token.status_code == 400 and no_token.json()["error"]["code"] == 104
    assert [item["event"]["event_id"] for item in sim.state.received(PIXEL)] == ["m", "j", "o"]


def test_invalid_event_rejects_whole_batch_in_metas_shape(sim: RunningSimulator):
    bad = event("b", at=NOW - timedelta(days=8))
    response = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("a"), bad]}, headers=AUTH)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 2804003, "OAuthException")
    assert error["message"] == "Invalid parameter"
    assert error["error_user_title"] == "Event Timestamp Too Old"
    assert "event 1" in error["error_user_msg"] and error["fbtrace_id"]
    assert sim.state.received(PIXEL) == []
    assert stats(sim, "SERVER_ONLY").json()["data"] == []


def test_malformed_data_and_wrong_version_are_refused(sim: RunningSimulator):
    not_json = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", data={"data": "[{oops"}, headers=AUTH)
    missing = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", data={"test_event_code": "T1"}, headers=AUTH)
    bad_version = httpx.post(f"{sim.url}/latest/{PIXEL}/events", json={"data": [event("a")]}, headers=AUTH)

    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == 100
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 100
    assert bad_version.status_code == 400 and bad_version.json()["error"]["code"] == 2500


def test_tokens_unknown_and_expired(sim: RunningSimulator):
    sim.state.add_tokens(expired=["old-token"])
    unknown = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("a")]},
                         headers={"Authorization": "Bearer who-am-i"})
    expired = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("a")]},
                         params={"access_token": "old-token"})

    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 190
    assert "error_subcode" not in unknown.json()["error"]
    assert (expired.json()["error"]["code"], expired.json()["error"]["error_subcode"]) == (190, 463)


def test_test_events_are_listed_but_not_counted(sim: RunningSimulator):
    httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("t")], "test_event_code": "TEST1"},
               headers=AUTH)
    httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("r")]}, headers=AUTH)

    listed = httpx.get(f"{sim.url}/_sim/received", params={"pixel_id": PIXEL}).json()["data"]
    assert [(i["event"]["event_id"], i["test_event_code"]) for i in listed] == [("t", "TEST1"), ("r", None)]
    buckets = stats(sim, "SERVER_ONLY").json()["data"]
    assert buckets == [{"aggregation": "event", "start_time": "2026-11-20T11:00:00+0000",
                        "data": [{"value": "Purchase", "count": 1}]}]


def test_live_events_add_to_seeded_history(sim: RunningSimulator):
    hour = NOW - timedelta(hours=1)
    sim.state.add_server_hours(PIXEL, [{"hour": to_iso(hour), "event_name": "Purchase", "count": 11,
                                        "with_event_id": 11}])
    sim.state.set_browser_hours(PIXEL, [{"hour": to_iso(hour), "event_name": "Purchase", "count": 12}])
    httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("x", at=hour)]}, headers=AUTH)

    server = stats(sim, "SERVER_ONLY", start_time=to_iso(hour), end_time=to_iso(NOW)).json()["data"]
    browser = stats(sim, "WEB_ONLY").json()["data"]
    assert server[0]["data"] == [{"value": "Purchase", "count": 12}]
    assert browser[0]["data"] == [{"value": "Purchase", "count": 12}]


def test_stats_seven_day_rule_and_paging(sim: RunningSimulator):
    start = NOW - timedelta(days=7)
    sim.state.set_browser_hours(PIXEL, [{"hour": to_iso(start + timedelta(hours=i)), "event_name": "Lead",
                                         "count": 1} for i in range(30)])
    too_long = stats(sim, "WEB_ONLY", start_time=to_unix(start - timedelta(hours=1)))
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == 100

    first = stats(sim, "WEB_ONLY", start_time=to_unix(start), limit=20).json()
    assert len(first["data"]) == 20
    next_url = first["paging"]["next"]
    assert "access_token" not in next_url
    second = httpx.get(next_url, headers=AUTH).json()
    assert len(second["data"]) == 10 and "next" not in second["paging"]
    hours = [b["start_time"] for b in first["data"] + second["data"]]
    assert len(set(hours)) == 30


def test_faults_are_scripted_per_endpoint_and_consumed(sim: RunningSimulator):
    armed = httpx.post(f"{sim.url}/_sim/faults", json={"mode": "rate_limit", "code": 80004, "count": 2,
                                                       "endpoint": "stats"})
    assert armed.status_code == 200
    assert httpx.post(f"{sim.url}/_sim/faults", json={"mode": "explode"}).status_code == 400

    sent = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("a")]}, headers=AUTH)
    limited = [stats(sim, "WEB_ONLY") for _ in range(3)]

    assert sent.status_code == 200
    assert [r.status_code for r in limited] == [400, 400, 200]
    assert limited[0].json()["error"]["code"] == 80004 and limited[0].json()["error"]["is_transient"]
    assert httpx.get(f"{sim.url}/_sim/faults").json()["faults"] == []

    httpx.post(f"{sim.url}/_sim/faults", json={"mode": "unavailable"})
    unavailable = stats(sim, "WEB_ONLY")
    assert unavailable.status_code == 503 and "error" not in unavailable.text


def test_clock_state_file_and_reset(sim: RunningSimulator, tmp_path: Path):
    moved = httpx.post(f"{sim.url}/_sim/clock", json={"now": "2026-11-21T00:00:00Z"}).json()
    assert moved["now"] == "2026-11-21T00:00:00Z"
    state_file = {
        "now": "2026-11-20T12:00:00Z", "generator": "ignored extra key",
        "tokens": {"valid": ["tok-a"], "expired": ["old-token"]},
        "pixels": {PIXEL: {
            "browser_hours": [{"hour": "2026-11-20T10:00:00Z", "event_name": "Purchase", "count": 12,
                               "with_event_id": 12}],
            "server_hours": [{"hour": "2026-11-20T10:00:00Z", "event_name": "Purchase", "count": 11,
                              "with_event_id": 11, "lag_seconds_p50": 30,
                              "match_keys": {"em": 10, "ph": 3, "fbc": 5, "fbp": 9, "client_ip_address": 11,
                                             "client_user_agent": 11, "external_id": 8}}]}},
    }
    loaded = httpx.post(f"{sim.url}/_sim/state", json=state_file).json()
    assert loaded["now"] == "2026-11-20T12:00:00Z"
    assert loaded["pixels"][PIXEL] == {"browser_hours": 1, "server_hours": 1, "received": 0}
    assert sim.state.token_status("tok-a") == "valid" and sim.state.token_status("sim-token") == "unknown"
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_file))
    assert SimState.load(path).stats(PIXEL, "server", NOW - timedelta(hours=3), NOW)[0][1] == {"Purchase": 11}

    httpx.post(f"{sim.url}/_sim/reset")
    assert httpx.get(f"{sim.url}/_sim/state").json()["pixels"] == {}


def test_dataset_quality_model_and_fields(sim: RunningSimulator):
    sim.state.add_tokens(valid=["sim-token"])
    hour = to_iso(NOW - timedelta(hours=2))
    old_hour = to_iso(NOW - timedelta(days=3))  # inside the 7-day window, outside EMQ's 48 h
    sim.state.set_browser_hours(PIXEL, [{"hour": hour, "event_name": "Purchase", "count": 10,
                                         "with_event_id": 10}])
    sim.state.add_server_hours(PIXEL, [
        {"hour": hour, "event_name": "Purchase", "count": 4, "with_event_id": 4, "lag_seconds_p50": 5400,
         "match_keys": {"em": 4, "ph": 4, "fbc": 4, "fbp": 4, "external_id": 4, "client_ip_address": 4,
                        "client_user_agent": 4}},
        {"hour": old_hour, "event_name": "Purchase", "count": 2, "with_event_id": 0, "lag_seconds_p50": 5400,
         "match_keys": {}},
    ])
    url = f"{sim.url}/v25.0/dataset_quality"

    full = httpx.get(url, params={"dataset_id": PIXEL}, headers=AUTH).json()["web"][0]
    fields = "web{event_match_quality{composite_score}}"
    narrow = httpx.get(url, params={"dataset_id": PIXEL, "fields": fields}, headers=AUTH).json()["web"][0]
    unknown = httpx.get(url, params={"dataset_id": "999"}, headers=AUTH)

    assert full["event_match_quality"]["composite_score"] == 10.0  # every key on every recent event
    assert full["event_coverage"] == {"percentage": 60.0, "goal_percentage": 75.0,
                                      "description": full["event_coverage"]["description"]}
    dedupe = full["dedupe_key_feedback"][0]
    assert dedupe["server_events_with_dedupe_key"]["percentage"] == pytest.approx(66.7)
    assert full["data_freshness"]["upload_frequency"] == "hourly"
    assert set(narrow) == {"event_name", "event_match_quality"}
    assert unknown.json() == {"web": []}

    sim.state.strict = True
    strict = httpx.get(url, params={"dataset_id": "999"}, headers=AUTH).json()["error"]
    assert (strict["code"], strict["error_subcode"]) == (100, 33)


def test_quality_model_pieces():
    assert composite_score({}) == 0.0
    assert composite_score(dict.fromkeys(
        ("email", "phone", "fbc", "external_id", "fbp", "ip_address", "user_agent"), 1.0)) == 10.0
    ip_ua = composite_score({"ip_address": 1.0, "user_agent": 1.0})
    with_email = composite_score({"ip_address": 1.0, "user_agent": 1.0, "email": 1.0})
    assert ip_ua == 3.8 and ip_ua < with_email < 10.0
    assert weighted_median([(30.0, 100), (7200.0, 10)]) == 30.0
    assert [upload_frequency(s) for s in (30, 3600, 86400)] == ["real_time", "hourly", "daily"]


def test_strict_mode_refuses_unknown_pixels():
    with run_simulator_in_thread(SimState(now=NOW, strict=True)) as sim:
        response = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events", json={"data": [event("a")]}, headers=AUTH)
    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["error_subcode"]) == (100, 33)


def test_cli_serves_the_state_file(tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"now": None, "tokens": {"valid": ["tok-cli"]}, "pixels": {}}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sim-meta", "--port", "0", "--state", str(path),
         "--now", "2026-11-20T12:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.split(" listening on ")[1].split()[0]
        assert "META_GRAPH_URL" in "".join(process.stdout.readline() for _ in range(2))
        clock = _retry_get(f"{url}/_sim/clock")
        assert clock["now"] == "2026-11-20T12:00:00Z"
        refused = httpx.get(f"{url}/v25.0/dataset_quality", params={"dataset_id": PIXEL},
                            headers={"Authorization": "Bearer sim-token"})
        assert refused.json()["error"]["code"] == 190  # only the configured token is valid
    finally:
        process.terminate()
        process.wait(timeout=10)


def _retry_get(url: str) -> Any:
    for _ in range(100):
        try:
            return httpx.get(url).json()
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the simulator did not come up")


# --- latency, usage headers and the call budget (tools/meta/simulator/usage.py) ---------------------


def test_graph_answers_carry_metas_usage_headers_and_control_paths_do_not(sim: RunningSimulator):
    answer = stats(sim, "WEB_ONLY")
    app = json.loads(answer.headers["x-app-usage"])
    assert set(app) == {"call_count", "total_cputime", "total_time"}
    buc = json.loads(answer.headers["x-business-use-case-usage"])
    [(business, [entry])] = buc.items()
    assert business.isdigit() and entry["type"] == "ads_management"
    assert entry["estimated_time_to_regain_access"] == 0
    assert "x-app-usage" not in httpx.get(f"{sim.url}/_sim/clock").headers


def test_call_budget_throttles_each_business_with_metas_80004_until_the_window_passes(sim: RunningSimulator):
    now = [0.0]
    sim.state.usage.clock = lambda: now[0]
    sim.state.add_tokens(valid=["tok-other"])
    settings = httpx.post(f"{sim.url}/_sim/usage", json={"call_budget": 2, "window_seconds": 600,
                                                         "reset": True}).json()
    assert settings["call_budget"] == 2
    first, second, third = (stats(sim, "WEB_ONLY") for _ in range(3))
    assert json.loads(first.headers["x-business-use-case-usage"]).popitem()[1][0]["call_count"] == 50
    assert second.status_code == 200
    assert third.status_code == 400
    error = third.json()["error"]
    assert error["code"] == 80004 and error["is_transient"] is True
    [entry] = json.loads(third.headers["x-business-use-case-usage"]).popitem()[1]
    assert entry["call_count"] == 100 and entry["estimated_time_to_regain_access"] == 10  # minutes
    other = httpx.get(f"{sim.url}/v25.0/{PIXEL}/stats", params={"event_source": "WEB_ONLY"},
                      headers={"Authorization": "Bearer tok-other"})
    assert other.status_code == 200  # another business has its own budget
    now[0] = 601.0
    assert stats(sim, "WEB_ONLY").status_code == 200  # the window moved on: access is back


def test_latency_holds_answers_back_per_call_and_per_pixel(sim: RunningSimulator):
    settings = httpx.post(f"{sim.url}/_sim/usage", json={"latency_ms": 120,
                                                         "pixel_latency_ms": {PIXEL: 200}}).json()
    assert settings["latency_ms"] == 120 and settings["pixel_latency_ms"] == {PIXEL: 200}
    assert sim.state.usage.delay_seconds(PIXEL) == pytest.approx(0.32)
    assert sim.state.usage.delay_seconds("other") == pytest.approx(0.12)
    started = time.perf_counter()
    httpx.get(f"{sim.url}/v25.0/dataset_quality", params={"dataset_id": PIXEL}, headers=AUTH)
    assert time.perf_counter() - started >= 0.32
    assert httpx.post(f"{sim.url}/_sim/usage", json={"latency_ms": "slow"}).status_code == 400


def test_module_entry_point_serves_with_latency(tmp_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.meta.simulator", "--port", "0", "--latency-ms", "150",
         "--call-budget", "100", "--now", "2026-11-20T12:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split("listening on ")[1].strip()
        usage = _retry_get(f"{url}/_sim/usage")
        assert (usage["latency_ms"], usage["call_budget"]) == (150, 100)
        assert _retry_get(f"{url}/_sim/clock")["now"] == "2026-11-20T12:00:00Z"
    finally:
        process.terminate()
        process.wait(timeout=10)
