"""GraphClient against the Graph API simulator over loopback HTTP: sending, typed errors, retries,
stats windows and paging, dataset quality, and the access token never reaching a log."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tools.meta.client import GraphClient
from tools.meta.errors import (
    InvalidParameterError,
    MetaUnreachableError,
    RateLimitedError,
    TokenInvalidError,
    TransientError,
    error_from_response,
)
from tools.meta.redact import redact
from tools.meta.simulator import Fault, RunningSimulator, SimState, run_simulator_in_thread
from tools.timeutil import to_iso, to_unix

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SIM_NOW = NOW  # the clock of the simulator fixture ``sim``
PIXEL = "1234567890"
EMAIL_HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def purchase(event_id: str, *, at: datetime = NOW - timedelta(minutes=30),
             **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "Purchase", "event_time": to_unix(at), "event_id": event_id,
        "action_source": "website", "event_source_url": "https://shop.example/thanks",
        "user_data": {"em": [EMAIL_HASH], "client_ip_address": "203.0.113.7",
                      "client_user_agent": "Mozilla/5.0", "fbp": "fb.1.1763600000000.123"},
        "custom_data": {"currency": "USD", "value": 42.5},
    }
    event.update(overrides)
    return event


def make_client(sim: RunningSimulator, **kwargs: Any) -> tuple[GraphClient, list[float]]:
    sleeps: list[float] = []
    options: dict[str, Any] = {"base_url": sim.url, "access_token": "sim-token", "timeout": 2.0,
                               "sleep": sleeps.append, **kwargs}
    return GraphClient(**options), sleeps


def test_send_events_json_batch_is_received_and_counted(sim: RunningSimulator, graph_client: GraphClient):
    result = graph_client.send_events(PIXEL, [purchase("o-1"), purchase("o-2")])

    assert result.events_received == 2
    assert result.messages == ()
    assert result.fbtrace_id
    assert result.attempts == 1
    assert [item["event"]["event_id"] for item in sim.state.received(PIXEL)] == ["o-1", "o-2"]
    stats = graph_client.pixel_stats(PIXEL, start=NOW - timedelta(hours=2), end=NOW, source="server")
    assert [(s.hour, s.event_name, s.count) for s in stats] == [(NOW - timedelta(hours=1), "Purchase", 2)]


def test_send_events_limits_and_batching(sim: RunningSimulator, graph_client: GraphClient):
    events = [purchase(f"o-{i}") for i in range(2500)]
    with pytest.raises(ValueError, match="at most 1000"):
        graph_client.send_events(PIXEL, events)
    with pytest.raises(ValueError):
        graph_client.send_events(PIXEL, [])

    results = graph_client.send_events_batched(PIXEL, events)

    assert [r.events_received for r in results] == [1000, 1000, 500]
    assert len(sim.state.received(PIXEL)) == 2500


def test_one_bad_event_rejects_the_whole_batch_without_retry(sim: RunningSimulator):
    client, sleeps = make_client(sim)
    bad = purchase("o-2")
    bad["user_data"] = {**bad["user_data"], "fbc": "not-a-click-id"}

    with pytest.raises(InvalidParameterError) as caught:
        client.send_events(PIXEL, [purchase("o-1"), bad])

    error = caught.value
    assert (error.code, error.subcode, error.http_status) == (100, 2804001, 400)
    assert error.error_type == "OAuthException"
    assert error.fbtrace_id
    assert error.attempts == 1 and sleeps == []
    assert sim.state.received(PIXEL) == []


def test_event_older_than_seven_days_rejects_the_batch(sim: RunningSimulator, graph_client: GraphClient):
    old = purchase("o-old", at=NOW - timedelta(days=7, hours=1))

    with pytest.raises(InvalidParameterError) as caught:
        graph_client.send_events(PIXEL, [purchase("o-new"), old])

    assert caught.value.subcode == 2804003
    assert caught.value.user_title == "Event Timestamp Too Old"
    assert sim.state.stats(PIXEL, "server", NOW - timedelta(days=8), NOW) == []


def test_unknown_and_expired_tokens_raise_token_invalid_without_retry(sim: RunningSimulator):
    sim.state.add_tokens(expired=["old-token"])
    unknown, unknown_sleeps = make_client(sim, access_token="nobody-knows-me")
    expired, _ = make_client(sim, access_token="old-token")

    with pytest.raises(TokenInvalidError) as caught_unknown:
        unknown.send_events(PIXEL, [purchase("o-1")])
    with pytest.raises(TokenInvalidError) as caught_expired:
        expired.pixel_stats(PIXEL, start=NOW - timedelta(hours=1), end=NOW, source="browser")

    assert caught_unknown.value.code == 190 and not caught_unknown.value.expired
    assert caught_unknown.value.attempts == 1 and unknown_sleeps == []
    assert (caught_expired.value.code, caught_expired.value.subcode) == (190, 463)
    assert caught_expired.value.expired
    assert sim.state.received(PIXEL) == []


def test_transient_errors_and_bare_5xx_are_retried_with_backoff(sim: RunningSimulator):
    client, sleeps = make_client(sim)
    sim.state.add_fault(Fault(mode="transient", remaining=1, endpoint="events"))
    sim.state.add_fault(Fault(mode="unavailable", remaining=1, endpoint="events"))

    result = client.send_events(PIXEL, [purchase("o-1")])

    assert result.events_received == 1
    assert result.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert len(sim.state.received(PIXEL)) == 1


def test_rate_limits_back_off_longer_and_honour_retry_after(sim: RunningSimulator):
    client, sleeps = make_client(sim)
    sim.state.add_fault(Fault(mode="rate_limit", code=17, endpoint="stats"))
    sim.state.add_fault(Fault(mode="rate_limit", code=4, retry_after=2.0, endpoint="stats"))

    client.pixel_stats(PIXEL, start=NOW - timedelta(hours=1), end=NOW, source="server")

    assert sleeps == [5.0, 2.0]


def test_retries_give_up_with_a_typed_error(sim: RunningSimulator):
    client, sleeps = make_client(sim, max_retries=2)
    sim.state.add_fault(Fault(mode="rate_limit", code=613, remaining=5, endpoint="*"))
    with pytest.raises(RateLimitedError) as caught:
        client.send_events(PIXEL, [purchase("o-1")])
    assert (caught.value.code, caught.value.subcode, caught.value.attempts) == (613, 1487742, 3)
    assert sleeps == [5.0, 10.0]

    sim.state.clear_faults()
    sim.state.add_fault(Fault(mode="transient", code=1, remaining=5, endpoint="events"))
    with pytest.raises(TransientError) as caught_transient:
        client.send_events(PIXEL, [purchase("o-1")])
    assert caught_transient.value.code == 1 and caught_transient.value.attempts == 3
    assert sim.state.received(PIXEL) == []


def test_timeouts_become_meta_unreachable(sim: RunningSimulator):
    client, sleeps = make_client(sim, timeout=0.2, max_retries=1)
    sim.state.add_fault(Fault(mode="timeout", remaining=2, endpoint="events", delay_seconds=0.6))

    with pytest.raises(MetaUnreachableError) as caught:
        client.send_events(PIXEL, [purchase("o-1")])

    assert caught.value.attempts == 2 and len(sleeps) == 1
    assert caught.value.http_status is None


def test_connection_refused_becomes_meta_unreachable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GraphClient(base_url=f"http://127.0.0.1:{port}", access_token="sim-token", max_retries=1,
                         sleep=lambda _s: None)
    with pytest.raises(MetaUnreachableError) as caught:
        client.dataset_quality(PIXEL)
    assert caught.value.attempts == 2


def test_stats_windows_over_seven_days_are_split_and_pages_followed(sim: RunningSimulator):
    start = NOW - timedelta(days=10)
    hours = [start + timedelta(hours=i) for i in range(240)]
    sim.state.set_browser_hours(PIXEL, [{"hour": to_iso(h), "event_name": "PageView", "count": 3}
                                        for h in hours])
    sim.state.set_browser_hours(PIXEL, [{"hour": to_iso(hours[-1]), "event_name": "Purchase", "count": 1}])
    too_long = httpx.get(f"{sim.url}/v25.0/{PIXEL}/stats",
                         params={"aggregation": "event", "event_source": "WEB_ONLY",
                                 "start_time": to_unix(start), "end_time": to_unix(NOW)},
                         headers={"Authorization": "Bearer sim-token"})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == 100

    client, _ = make_client(sim)
    counts = client.pixel_stats(PIXEL, start=start, end=NOW, source="browser")

    page_views = [c for c in counts if c.event_name == "PageView"]
    assert [c.hour for c in page_views] == hours
    assert {c.count for c in page_views} == {3} and {c.source for c in counts} == {"browser"}
    assert [(c.hour, c.count) for c in counts if c.event_name == "Purchase"] == [(hours[-1], 1)]
    assert client.pixel_stats(PIXEL, start=start, end=NOW, source="server") == []


def test_dataset_quality_is_parsed(sim: RunningSimulator, graph_client: GraphClient):
    hour = to_iso(NOW - timedelta(hours=3))
    sim.state.set_browser_hours(PIXEL, [{"hour": hour, "event_name": "Purchase", "count": 20,
                                         "with_event_id": 20}])
    sim.state.add_server_hours(PIXEL, [{
        "hour": hour, "event_name": "Purchase", "count": 10, "with_event_id": 5, "lag_seconds_p50": 30,
        "match_keys": {"em": 10, "ph": 5, "client_ip_address": 10, "client_user_agent": 10},
    }])

    snapshot = graph_client.dataset_quality(PIXEL, fetched_at=NOW)

    assert snapshot.fetched_at == NOW
    (quality,) = snapshot.events
    assert quality.event_name == "Purchase"
    # signal 3.0 (email) + 1.5 * 0.5 (phone) + 1.0 (ip) + 1.0 (ua) = 5.75 through the EMQ curve
    assert quality.composite_score == pytest.approx(7.9)
    assert quality.match_key_coverage["email"] == 100.0
    assert quality.match_key_coverage["phone"] == 50.0
    assert quality.match_key_coverage["fbc"] == 0.0
    assert quality.event_coverage_pct == 50.0
    (dedupe,) = quality.dedupe_key_feedback
    assert (dedupe.dedupe_key, dedupe.browser_pct, dedupe.server_pct) == ("event_id", 100.0, 50.0)
    assert dedupe.overall_browser_coverage_pct == 25.0
    assert quality.upload_frequency == "real_time"


def test_appsecret_proof_is_sent_when_configured(sim: RunningSimulator):
    sim.state.app_secret = "app-secret-value"
    with_proof, _ = make_client(sim, app_secret="app-secret-value")
    without_proof, _ = make_client(sim)

    assert with_proof.send_events(PIXEL, [purchase("o-1")]).events_received == 1
    with pytest.raises(InvalidParameterError):
        without_proof.send_events(PIXEL, [purchase("o-2")])


def test_error_mapping_covers_meta_codes():
    def err(status: int, **fields: Any) -> Exception:
        return error_from_response(status, {"error": {"message": "m", **fields}})

    assert isinstance(err(400, code=190, error_subcode=460), TokenInvalidError)
    assert isinstance(err(400, code=80004), RateLimitedError)
    assert isinstance(err(400, code=100, error_subcode=33), InvalidParameterError)
    assert isinstance(err(500, code=2, is_transient=True), TransientError)
    assert isinstance(error_from_response(502, None), TransientError)
    assert isinstance(error_from_response(429, None), RateLimitedError)
    assert err(400, code=100, error_subcode=2804003).error_key == "100/2804003"
    assert err(400, code=190).error_key == "190/"
    assert err(400, code=190).read_error_kind == "token_invalid"
    assert error_from_response(503, None).read_error_kind == "unreachable"
    assert err(400, code=100).read_error_kind == "other"


class RecordingTransport(httpx.HTTPTransport):
    """A real socket transport that remembers what it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_token_canary_never_reaches_a_log_or_url(caplog: pytest.LogCaptureFixture):
    canary = "EAACANARYtoken0123456789abcdef"
    state = SimState(now=NOW, valid_tokens=[canary], app_secret="canary-app-secret")
    transport = RecordingTransport()
    caplog.set_level(logging.DEBUG)
    with run_simulator_in_thread(state) as sim:
        client = GraphClient(base_url=sim.url, access_token=canary, app_secret="canary-app-secret",
                             transport=transport, sleep=lambda _s: None)
        sim.state.add_fault(Fault(mode="transient", endpoint="events"))
        client.send_events(PIXEL, [purchase("o-1")])
        client.pixel_stats(PIXEL, start=NOW - timedelta(hours=2), end=NOW, source="server")
        client.dataset_quality(PIXEL)
        bad = purchase("o-2", event_time=to_unix(NOW - timedelta(days=9)))
        with pytest.raises(InvalidParameterError) as rejected:
            client.send_events(PIXEL, [bad])
        sim.state.add_fault(Fault(mode="token_invalid", endpoint="*"))
        with pytest.raises(TokenInvalidError) as refused:
            client.dataset_quality(PIXEL)
        logging.getLogger("test").exception("failed with %s", refused.value, exc_info=refused.value)
        # An SDK-style caller puts the token in the query string; the simulator logs that request line.
        sdk = httpx.post(f"{sim.url}/v25.0/{PIXEL}/events?access_token={canary}",
                         data={"data": "[]"})
        assert sdk.status_code == 400
        client.close()

    assert any("HTTP Request" in record.getMessage() for record in caplog.records)  # httpx did log URLs
    assert any("/events" in record.getMessage() for record in caplog.records
               if record.name == "capi_agent.sim_meta")
    for record in caplog.records:
        assert canary not in record.getMessage()
        assert canary not in (record.exc_text or "")
    assert canary not in caplog.text
    assert canary not in str(rejected.value) and canary not in str(refused.value)
    assert transport.requests
    for request in transport.requests:
        assert canary not in str(request.url)
        assert request.headers["Authorization"] == f"Bearer {canary}"
        assert "appsecret_proof" in str(request.url)
    assert "appsecret_proof=***" in caplog.text


def test_redact_masks_tokens_proofs_and_bearer_credentials():
    text = ('GET /v25.0/1/events?access_token=EAAB123xyz&appsecret_proof=abc123 '
            '{"access_token": "EAAB456"} Authorization: Bearer EAAB789secret')
    cleaned = redact(text)
    for secret in ("EAAB123xyz", "abc123", "EAAB456", "EAAB789secret"):
        assert secret not in cleaned
    assert "access_token=***" in cleaned and "Bearer ***" in cleaned
    assert redact("nothing secret here") == "nothing secret here"


def test_installed_redaction_masks_records_from_any_logger(caplog: pytest.LogCaptureFixture):
    canary = "EAACANARYregistered987654"
    GraphClient(base_url="http://127.0.0.1:9", access_token=canary).close()  # registers + installs
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("third.party")

    log.info("calling %s", httpx.URL(f"https://graph.facebook.com/v25.0/me?access_token={canary}&x=1"))
    log.debug("token is %s", canary)
    log.warning("header Authorization: Bearer %s", "some-other-bearer-value")
    try:
        raise RuntimeError(f"boom {canary}")
    except RuntimeError:
        log.exception("failed")

    assert len(caplog.records) == 4
    assert canary not in caplog.text and "some-other-bearer-value" not in caplog.text
    assert "access_token=***" in caplog.records[0].getMessage()
    assert "x=1" in caplog.records[0].getMessage()
