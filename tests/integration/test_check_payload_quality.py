"""Payload quality: events Meta accepts but cannot use well are flagged at the door, counted into
``payload_hours`` (never a raw value), and reported by the ``payload`` check with counts, shares,
masked examples and a repair in words; a problem present all week is info, a new one a warning."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from tests.agentworld import agent_world, small_scenario, world_template
from tests.e2e.test_serve_world import APPROVER, CHANNEL, SECRET, everything_slack_saw, serve_over
from tests.fakes.slack_api import RESPONSE_URL_METHOD, FakeSlackAPI
from tests.fakes.slack_requests import bolt_request, command_body
from tests.fixtures.db import PIXEL, event_line, sha, write_jsonl
from tools.checks.payload_quality import check_payload, distinct_users
from tools.checks.registry import run_checks
from tools.checks.types import AuditInputs, Finding
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.models import Event, PayloadHourRollup
from tools.ledger.payload import id_shape, load_payload_hours, mask_ip, payload_flags
from tools.ledger.rollups import rebuild_rollups

WINDOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
RAW_EMAIL = "jane.doe.canary@example.org"
RAW_PHONE = "+1 (650) 555-0143"
RAW_IP = "192.0.2.77"
TEST_CODE = "TEST98765"


def _user(i: int, *, ip: str | None = None) -> dict[str, Any]:
    return {"em": [sha(f"user{i}@example.com")], "client_ip_address": ip or f"203.0.{i % 200}.{i % 250 + 1}",
            "client_user_agent": "Mozilla/5.0", "fbp": f"fb.1.1763600000000.{1000 + i}"}


def _clean(at: datetime, i: int, name: str = "Purchase") -> dict[str, Any]:
    custom = {"currency": "USD", "value": 20.0 + i, "order_id": f"o{i}"} if name == "Purchase" else None
    return event_line(event_time=at, name=name, event_id=f"o{i}" if name == "Purchase" else f"ev{i}",
                      user_data=_user(i), custom_data=custom, received_at=at + timedelta(seconds=5))


def _history(days: int = 7, per_day: int = 6) -> list[dict[str, Any]]:
    """Clean Purchases over the week before the window, spread over the day."""
    return [_clean(WINDOW - timedelta(days=d, hours=3 * k + 1), 1000 * d + k)
            for d in range(1, days + 1) for k in range(per_day)]


def _inputs(engine: Engine) -> AuditInputs:
    with Session(engine) as session:
        hours = load_payload_hours(session, pixel_id=PIXEL, window_end=WINDOW + timedelta(hours=1))
    return AuditInputs(pixel_id=PIXEL, window_start=WINDOW, window_end=WINDOW + timedelta(hours=1),
                       history_start=WINDOW - timedelta(weeks=4), event_hours=(), delivery_hours=(),
                       payload_hours=hours)


def _load(engine: Engine, tmp_path: Path, lines: list[dict[str, Any]]) -> None:
    report = ingest_events_jsonl(session_or_engine=engine, path=write_jsonl(tmp_path / "e.jsonl", lines),
                                 batch_size=50)
    assert not report.skipped


def _by_code(findings: list[Finding]) -> dict[str, Finding]:
    return {f.code: f for f in findings}


def test_flags_name_the_problem_and_keep_no_customer_value() -> None:
    event = {"event_name": "Purchase", "event_time": 1763632800, "event_id": "order-77", "test_event_code": TEST_CODE,
             "custom_data": {"value": "19.99"}, "user_data": {"em": RAW_EMAIL, "ph": 16505550143, "external_id": True,
                                                              "client_ip_address": RAW_IP}}
    flags = payload_flags(event, event_time=WINDOW, received_at=WINDOW + timedelta(hours=50))
    assert set(flags["pq"]) == {"test_event_code", "purchase_no_currency", "purchase_value_text",
                                "no_action_source", "user_data_not_string"}
    assert "external_id (boolean)" in flags["pq"]["user_data_not_string"]
    assert "ph (number)" in flags["pq"]["user_data_not_string"]
    assert flags["late"] == 1 and flags["idf"] == "a-9" and flags["ip"].startswith("192.0.2.x#")
    text = json.dumps(flags)
    for raw in (RAW_EMAIL, "16505550143", RAW_IP, TEST_CODE, "19.99", "order-77"):
        assert raw not in text
    # A website event: its page and browser are expected too.
    web = payload_flags({"event_name": "PageView", "event_time": 1, "action_source": "website", "user_data": {}},
                        event_time=WINDOW, received_at=WINDOW)
    assert set(web["pq"]) == {"website_no_source_url", "website_no_user_agent"} and web["web"] == 1


def test_an_event_time_in_milliseconds_is_a_clear_line_error_not_a_crash(sqlite_url: str, tmp_path: Path) -> None:
    from tools.ledger.db import make_engine, migrate

    engine = make_engine(sqlite_url)
    migrate(engine)
    good = _clean(WINDOW, 1)
    bad = _clean(WINDOW, 2)
    bad["event"]["event_time"] = int(WINDOW.timestamp()) * 1000
    report = ingest_events_jsonl(session_or_engine=engine, path=write_jsonl(tmp_path / "e.jsonl", [bad, good]))
    engine.dispose()
    assert report.loaded == 1 and report.skipped == [(1, "event.event_time looks like milliseconds; Meta wants "
                                                        "unix seconds")]


@pytest.mark.parametrize(("event_id", "shape"), [
    ("srv_000123", "srv_09"), ("ord-1001", "a-9"), ("ev-3fa9c0d1", "a-x"), ("1001-server", "9-server"),
    ("0000001001", "09"), ("123e4567-e89b-12d3-a456-426614174000", "uuid")])
def test_event_id_shapes_keep_the_form_not_the_value(event_id: str, shape: str) -> None:
    assert id_shape(event_id) == shape


def test_ip_is_masked_to_its_network_and_a_short_fingerprint() -> None:
    assert mask_ip("198.51.100.20") == "198.51.100.x#" + hashlib.sha256(bytes([198, 51, 100, 20])).hexdigest()[:4]
    assert mask_ip("2001:db8:1:2::7").startswith("2001:db8:1::/48#")
    assert mask_ip("not an ip") is None and mask_ip(None) is None


def test_new_problems_are_warnings_with_counts_shares_examples_and_repairs(ledger_engine: Engine,
                                                                           tmp_path: Path) -> None:
    window: list[dict[str, Any]] = []
    for i in range(30):
        line = _clean(WINDOW + timedelta(minutes=2 * i), i)
        custom, event = line["event"]["custom_data"], line["event"]
        if i < 12:
            custom.pop("currency")
        if i < 6:
            custom["value"] = f"{custom['value']:.2f}"
        if i < 9:
            event["test_event_code"] = TEST_CODE
        if i < 3:
            event["user_data"]["zp"] = 94035  # a number where Meta wants a string
        window.append(line)
    _load(ledger_engine, tmp_path, _history() + window)
    findings = _by_code(check_payload(_inputs(ledger_engine)))
    assert set(findings) == {"payload.purchase_no_currency", "payload.purchase_value_text",
                             "payload.test_event_code", "payload.user_data_not_string"}
    currency = findings["payload.purchase_no_currency"]
    assert currency.severity == "warning" and currency.event_name == "Purchase"
    assert (currency.metrics["count"], currency.metrics["events"], currency.metrics["observed"]) == (12, 30, 0.4)
    assert currency.metrics["baseline"] == 0.0 and currency.metrics["standing"] == 0
    assert "12 of 30 Purchase events" in currency.summary and "currency" in str(currency.metrics["repair"])
    examples = [line for line in currency.evidence if line.startswith("example: ")]
    assert 1 <= len(examples) <= 3 and all("Purchase without currency" in e for e in examples)
    assert findings["payload.test_event_code"].metrics["count"] == 9
    assert TEST_CODE not in json.dumps([f.model_dump(mode="json") for f in findings.values()])
    assert "zp (number)" in " ".join(findings["payload.user_data_not_string"].evidence)
    # Registered: the full run of checks carries them.
    assert {f.code for f in run_checks(_inputs(ledger_engine), only=["payload"])} == set(findings)


def test_a_problem_present_all_week_is_info_not_a_warning(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = _history() + [_clean(WINDOW + timedelta(minutes=2 * i), i) for i in range(20)]
    for line in lines:
        line["event"]["custom_data"].pop("currency")
    _load(ledger_engine, tmp_path, lines)
    [finding] = check_payload(_inputs(ledger_engine))
    assert (finding.code, finding.severity, finding.metrics["standing"]) == ("payload.purchase_no_currency", "info", 1)


def test_clean_traffic_and_a_few_odd_events_raise_nothing(ledger_engine: Engine, tmp_path: Path) -> None:
    window = [_clean(WINDOW + timedelta(minutes=i), i) for i in range(40)]
    window[0]["event"]["custom_data"].pop("currency")  # one of forty: below the floor
    _load(ledger_engine, tmp_path, _history() + window)
    assert check_payload(_inputs(ledger_engine)) == []


def test_one_ip_for_many_users_is_the_servers_own_address(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = [_clean(WINDOW + timedelta(minutes=i), i, name="ViewContent") for i in range(40)]
    for line in lines:
        line["event"]["user_data"]["client_ip_address"] = RAW_IP
    _load(ledger_engine, tmp_path, lines)
    [finding] = check_payload(_inputs(ledger_engine))
    assert finding.code == "payload.constant_ip" and finding.severity == "warning"
    assert finding.metrics["count"] == finding.metrics["events"] == 40 and finding.metrics["users"] >= 30
    text = json.dumps(finding.model_dump(mode="json"))
    assert RAW_IP not in text and "192.0.2.x" in text


def test_one_ip_for_one_user_is_not_a_constant_ip(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = [_clean(WINDOW + timedelta(minutes=i), i, name="ViewContent") for i in range(40)]
    for line in lines:  # one shopper browsing: one address, one email
        line["event"]["user_data"].update(client_ip_address=RAW_IP, em=[sha("one@example.com")])
    _load(ledger_engine, tmp_path, lines)
    assert check_payload(_inputs(ledger_engine)) == []
    assert distinct_users(0) == 0.0 and distinct_users(1) == pytest.approx(1.0, abs=0.01)


def test_payload_rollups_equal_a_rebuild_and_hold_no_raw_value(ledger_engine: Engine, tmp_path: Path) -> None:
    lines = _history(days=2)
    for i in range(25):
        line = _clean(WINDOW + timedelta(minutes=i), i, name=("Purchase", "Lead")[i % 2])
        line["event"]["user_data"].update(em=RAW_EMAIL, ph=RAW_PHONE, client_ip_address=RAW_IP)
        line["event"]["test_event_code"] = TEST_CODE
        lines.append(line)
    _load(ledger_engine, tmp_path, lines)
    with Session(ledger_engine) as session:
        def rows() -> list[tuple[Any, ...]]:
            return sorted((r.pixel_id, r.hour.replace(tzinfo=None), r.event_name, r.events,
                           json.dumps(r.detail, sort_keys=True)) for r in session.scalars(select(PayloadHourRollup)))
        incremental = rows()
        assert sum(r[3] for r in incremental) == len(lines)
        rebuild_rollups(session)
        session.commit()
        assert rows() == incremental
        stored = " ".join(r[4] for r in incremental) + json.dumps(
            [e.flags for e in session.scalars(select(Event))])
    for raw in (RAW_EMAIL, "6505550143", RAW_IP, TEST_CODE):
        assert raw not in stored


def test_no_raw_customer_value_reaches_a_finding_or_the_log(ledger_engine: Engine, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    lines = []
    for i in range(30):
        line = _clean(WINDOW + timedelta(minutes=i), i)
        email = RAW_EMAIL if i == 0 else f"shopper{i}@example.org"  # many users behind one address
        line["event"]["user_data"].update(em=email, ph=RAW_PHONE, client_ip_address=RAW_IP, zp=94035)
        line["event"]["custom_data"].pop("currency")
        lines.append(line)
    _load(ledger_engine, tmp_path, lines)
    findings = run_checks(_inputs(ledger_engine), only=["payload", "dedupe"])
    assert {"payload.constant_ip", "payload.purchase_no_currency", "payload.user_data_not_string"} <= {
        f.code for f in findings}
    seen = json.dumps([f.model_dump(mode="json") for f in findings]) + caplog.text
    for raw in (RAW_EMAIL, RAW_PHONE, "6505550143", RAW_IP):
        assert raw not in seen


# --- end to end: ingest -> audit -> the Slack answer ---------------------------------------------

@pytest.mark.slow
def test_payload_findings_reach_slack_and_no_raw_value_does(tmp_path_factory: pytest.TempPathFactory,
                                                            tmp_path: Path, fake: FakeSlackAPI,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scenario = small_scenario()
    template = world_template(scenario, tmp_path_factory)
    hour = scenario.audit_at.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    lines = []
    for i in range(40):  # a release ships with a test code and without currency; raw PII arrives too
        line = event_line(event_time=hour + timedelta(minutes=i), name="Purchase", event_id=f"canary-{i}",
                          pixel_id=scenario.pixel_id, custom_data={"value": 30 + i, "order_id": f"canary-{i}"},
                          user_data={"em": [RAW_EMAIL if i == 0 else f"buyer{i}@example.org"], "ph": RAW_PHONE,
                                     "client_ip_address": RAW_IP, "client_user_agent": "Mozilla/5.0"})
        line["event"]["test_event_code"] = TEST_CODE
        lines.append(line)
    with agent_world(template, tmp_path, extra_events=lines) as world, serve_over(world, fake) as serve:
        text = "audit"
        body = command_body(text=text, user=APPROVER, channel=CHANNEL, response_url=fake.response_url(text))
        assert serve.app.dispatch(bolt_request(body, SECRET, form=True)).status == 200
        [answer] = [c for c in fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == text]
    message = str(answer.args["text"])
    assert "payload.test_event_code" in message and "payload.purchase_no_currency" in message
    assert "carry a test_event_code" in message and "have no currency" in message
    seen = everything_slack_saw(fake) + caplog.text
    for raw in (RAW_EMAIL, RAW_PHONE, "6505550143", RAW_IP, TEST_CODE):
        assert raw not in seen
