"""Why deduplication fails and accepted-but-useless payloads, end to end through ``capi-agent serve``:
library scenarios of the ``dedup_reasons`` and ``payload_quality`` families (cut to their last 8
days), generated and loaded through ingest (plus a Purchase whose e-mail, phone and IP arrive raw),
audited on the scheduler's path, announced in Slack (fake Slack Web API). The incident message
names the reason or the defect with its counts and masked examples; the other payload findings are
in the ``/capi audit`` answer; no customer value (the raw canaries, the synthetic shoppers' e-mails,
the sender's own IP address) reaches Slack or the log."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agentworld import agent_world, small_scenario, world_template
from tests.e2e.test_serve_world import (
    APPROVER,
    BOT_TOKEN,
    CHANNEL,
    SECRET,
    ServeWorld,
    everything_slack_saw,
    serve_over,
)
from tests.fakes.slack_api import RESPONSE_URL_METHOD, FakeSlackAPI
from tests.fakes.slack_requests import bolt_request, command_body
from tests.fixtures.db import event_line
from tools.synth.causes_traffic import DEDUP_REASONS, PAYLOAD_DEFECTS, SERVER_IP
from tools.synth.scenario import Scenario

RAW_EMAIL = "issue11.canary@example.org"
RAW_PHONE = "+1 (650) 555-0199"
RAW_IP = "203.0.113.99"
DAYS = 8  # a week of history: a new problem is judged against it



def canary(scenario: Scenario) -> list[dict[str, Any]]:
    """A Purchase of the day before whose customer information arrived raw (hashed at ingest)."""
    return [event_line(event_time=scenario.audit_at - timedelta(days=1), name="Purchase",
                       event_id="issue11-canary", pixel_id=scenario.pixel_id,
                       user_data={"em": [RAW_EMAIL], "ph": RAW_PHONE, "client_ip_address": RAW_IP,
                                  "client_user_agent": "Mozilla/5.0"},
                       custom_data={"currency": "USD", "value": 42.0, "order_id": "issue11-canary"})]


def posted(fake: FakeSlackAPI) -> list[str]:
    """Each top-level message the fake Slack accepted, as its blocks' JSON."""
    out = []
    for call in fake.calls_to("chat.postMessage"):
        blocks = call.args.get("blocks")
        out.append(json.dumps(json.loads(blocks) if isinstance(blocks, str) else blocks))
    return out


def assert_nothing_raw(fake: FakeSlackAPI, log: str, *extra: str) -> None:
    seen = everything_slack_saw(fake) + log
    for raw in (RAW_EMAIL, RAW_PHONE, "6505550199", RAW_IP, BOT_TOKEN, *extra):
        assert raw not in seen, raw
    assert "@example.com" not in seen.lower(), "a synthetic shopper's e-mail"


@contextmanager
def served(sid: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
           fake: FakeSlackAPI) -> Iterator[ServeWorld]:
    scenario = small_scenario(sid, days=DAYS)
    template = world_template(scenario, tmp_path_factory)
    with agent_world(template, tmp_path, extra_events=canary(scenario)) as world, serve_over(world, fake) as serve:
        yield serve


# The library's dedup_reasons variants, one per reason (families.py gives variant k reason k).
REASONS = {"dedup_reasons_01.v1": ("id_prefix", "srv_"), "dedup_reasons_02.v1": ("id_suffix", "-server"),
           "dedup_reasons_03.v1": ("id_padding", "09")}


LATE = "dedup_reasons_04.v1"  # server copies sent 50-96 h after the event


def test_the_dedup_reasons_variants_show_every_reason_the_synth_injects() -> None:
    from tools.synth.scenario import find_scenario

    shown = {sid: find_scenario(sid).injections[0].params["reason"] for sid in [*REASONS, LATE]}
    assert shown == {**{sid: reason for sid, (reason, _) in REASONS.items()}, LATE: "server_late"}
    assert set(shown.values()) == set(DEDUP_REASONS)


@pytest.mark.slow
@pytest.mark.parametrize("sid", sorted(REASONS))
def test_why_deduplication_fails_is_in_the_incident_message_with_counts_and_id_shapes(
        sid: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fake: FakeSlackAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    reason, shape_mark = REASONS[sid]
    with served(sid, tmp_path_factory, tmp_path, fake) as serve:
        state = serve.audit()
        assert [i["root_cause"] for i in state["report"]["incidents"]] == ["dedup_broken"]
        findings = [f for f in state["report"]["findings"] if f["code"] == "dedupe.reasons"]
        assert findings and {f["metrics"]["main_reason"] for f in findings} == {"id_format"}
        report = serve.deliver()
    assert report.sent == 1 and report.failed == 0
    [message] = posted(fake)
    assert "New incident: Deduplication broken" in message
    assert "server event_id format most likely differs from the browser's (inferred)" in message
    # Counts as "k of n (p%)" that agree with themselves, and the ids' form (never their value).
    counts = re.findall(r"(\d+) of (\d+) \((\d+)%\)", message)
    assert counts and all(round(100 * int(k) / int(n)) == int(p) for k, n, p in counts)
    shapes = re.search(r"event_id shapes, latest \d+ h \([^)]*\): ([^\\]*)", message)
    assert shapes is not None and shape_mark.strip("_-") in shapes.group(1), (reason, message)
    assert "not visible to capi-agent: the browser's own event_ids" in message
    assert not re.search(r"srv_\d|\d-server|\b0{4,}\d", message), "an event_id's value reached Slack"
    assert_nothing_raw(fake, caplog.text)


@pytest.mark.slow
def test_server_copies_later_than_48_hours_are_a_dedup_reason_with_their_share_in_slack(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fake: FakeSlackAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    """A share of server Purchases reaches the ledger 50-96 h after checkout: their own event_time hours
    are older than the 48 h the check reads, so they count where they arrived, and the incident message
    says which share arrived too late for Meta to merge with the Pixel's copy."""
    caplog.set_level(logging.DEBUG)
    with served(LATE, tmp_path_factory, tmp_path, fake) as serve:
        state = serve.audit()
        assert "dedup_broken" in [i["root_cause"] for i in state["report"]["incidents"]]
        [finding] = [f for f in state["report"]["findings"] if f["code"] == "dedupe.reasons"]
        assert finding["event_name"] == "Purchase" and finding["metrics"]["main_reason"] == "server_late"
        # The injection delays 40% of the Purchases that have an event_id.
        assert 0.2 <= finding["metrics"]["share_server_late"] <= 0.7, finding["metrics"]
        assert serve.deliver().failed == 0
    [message] = [m for m in posted(fake) if "New incident: Deduplication broken" in m]
    assert "server copy arrived more than 48 hours after event_time" in message
    late = re.search(r"server copy arrived more than 48 hours after event_time: (\d+) of (\d+) \((\d+)%\)", message)
    assert late is not None and round(100 * int(late.group(1)) / int(late.group(2))) == int(late.group(3))
    assert re.search(r"\d+ of \d+ server Purchase copies that arrived in the latest 48 h came more than 48 hours",
                     message)
    assert "Send server events within minutes" in message
    assert_nothing_raw(fake, caplog.text)


def payload_codes(scenario: Scenario) -> set[str]:
    """The payload.* findings a payload_quality variant's injection should raise."""
    [injection] = scenario.injections
    codes = {f"payload.{defect}" for defect in injection.params["payload"]}
    # Without action_source an event is not a website event, which alone must carry a user agent.
    if "client_user_agent" in injection.params["keys"] and "no_action_source" not in injection.params["payload"]:
        codes.add("payload.website_no_user_agent")
    return codes


PAYLOAD_VARIANTS = [f"payload_quality_0{k}.v1" for k in range(1, 5)]


def test_the_payload_variants_show_every_kind_the_synth_injects() -> None:
    from tools.synth.scenario import find_scenario

    shown = set().union(*(payload_codes(find_scenario(sid)) for sid in PAYLOAD_VARIANTS))
    assert shown == {f"payload.{d}" for d in PAYLOAD_DEFECTS} | {"payload.website_no_user_agent"}


@pytest.mark.slow
@pytest.mark.parametrize("sid", PAYLOAD_VARIANTS)
def test_useless_payloads_reach_slack_with_counts_and_masked_examples_only(
        sid: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fake: FakeSlackAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with served(sid, tmp_path_factory, tmp_path, fake) as serve:
        expected = payload_codes(serve.world.scenario)
        state = serve.audit()
        findings = {f["code"]: f for f in state["report"]["findings"]}
        assert expected <= set(findings), (expected, sorted(findings))
        assert [i["root_cause"] for i in state["report"]["incidents"]] == ["match_keys_lost"]
        assert serve.deliver().sent == 1
        [message] = posted(fake)
        if "payload.constant_ip" in expected:
            match = re.search(r"(\d+) of (\d+) server events with an IP address", message)
            assert match is not None and match.group(1) == match.group(2)
            assert "198.51.100.x#" in message, "the address is shown as its network and a fingerprint"
            assert "different users" in message

        text = "audit"
        body = command_body(text=text, user=APPROVER, channel=CHANNEL, response_url=fake.response_url(text))
        assert serve.app.dispatch(bolt_request(body, SECRET, form=True)).status == 200
        [answer] = [c for c in fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == text]
    answer_text = str(answer.args["text"])
    for code in expected:
        count = findings[code]["metrics"]["count"]
        assert code in answer_text and f"{count} of " in answer_text, code
    assert_nothing_raw(fake, caplog.text, SERVER_IP, "TEST4821")


@pytest.mark.slow
def test_payload_findings_without_an_incident_reach_the_hourly_summary(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fake: FakeSlackAPI,
        caplog: pytest.LogCaptureFixture) -> None:
    """The payload findings that open no incident (test_event_code, value as text) are in the channel's
    hourly summary with their counts and masked examples: ingest -> audit (the scheduler's path) ->
    summary in the outbox -> Slack."""
    from sqlmodel import Session

    from tools.ledger.pixels import sync_pixels

    caplog.set_level(logging.DEBUG)
    with served("payload_quality_01.v1", tmp_path_factory, tmp_path, fake) as serve:
        with Session(serve.world.engine) as session:
            sync_pixels(session, [serve.pixel.model_copy(update={"summaries": "hourly"})])
            session.commit()
        state = serve.audit()
        findings = {f["code"]: f for f in state["report"]["findings"]}
        assert serve.deliver().failed == 0
    shown = "\n".join(posted(fake))
    assert "capi-agent hourly summary" in shown and "Accepted but useless:" in shown
    for code in ("payload.test_event_code", "payload.purchase_value_text"):
        count, events = findings[code]["metrics"]["count"], findings[code]["metrics"]["events"]
        assert f"{code} (warning): {count} of {events} " in shown, code
    assert "test_event_code TE***(8)" in shown and "value sent as text (***(6))" in shown
    assert_nothing_raw(fake, caplog.text, SERVER_IP, "TEST4821")
