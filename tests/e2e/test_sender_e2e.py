"""The change that broke it, end to end: a shop whose plugin update (woo-capi 3.2.1 -> 3.3.0) stops its
server Purchase events, generated and loaded through ``ingest`` (lines with a ``sender``), audited by
the agent as ``capi-agent serve`` does, announced in Slack (fake Slack Web API) with the change named,
and "what changed yesterday?" answered in the thread. The relay over HTTP records the same change from
the requests' User-Agent and partner_agent, and keeps nothing of the customers or the token."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.agentworld import WorldTemplate, world_template
from tests.e2e.test_serve_world import APPROVER, CHANNEL, SECRET, ServeWorld, message_of
from tests.fakes.slack_requests import bolt_request, event_body, message_event
from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import PIXEL, make_event, running_relay
from tools.meta.simulator import RunningSimulator
from tools.senders.track import load_sender_changes, load_senders
from tools.synth.scenario import Scenario
from tools.timeutil import parse_iso, utcnow

BEFORE = {"user_agent": "fbbizsdk-php-v17.0.0", "partner_agent": "woo-capi-3.2.1"}
AFTER = {"user_agent": "fbbizsdk-php-v17.0.0", "partner_agent": "woo-capi-3.3.0"}
SCENARIO = Scenario.model_validate({
    "id": "sender_change_e2e.v1", "description": "woo-capi 3.3.0 stops sending Purchase", "seed": 11,
    "pixel_id": "1200000011", "start": "2026-11-06T00:00:00Z", "days": 7, "audit_at": "2026-11-12T17:05:00Z",
    "injections": [{"cause": "server_events_down", "onset": "2026-11-12T14:02:00Z", "events": ["Purchase"],
                    "params": {"sender": {"before": BEFORE, "after": AFTER}}}],
    "expect": {"root_causes": ["server_events_down"], "healthy": False}})
CHANGE_LINE = "the sender changed from woo-capi 3.2.1 to 3.3.0"



@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> WorldTemplate:
    return world_template(SCENARIO, tmp_path_factory)


@pytest.mark.slow
def test_the_incident_names_the_plugin_update_in_the_audit_slack_and_the_chat(serve: ServeWorld) -> None:
    state = serve.audit()
    [incident] = [i for i in state["report"]["incidents"] if "Purchase" in i["event_names"]]
    assert incident["root_cause"] == "server_events_down"
    assert [(c["kind"], c["before"], c["after"]) for c in incident["changes"]] == [
        ("version", "woo-capi 3.2.1", "woo-capi 3.3.0")]
    changed_at = parse_iso(incident["changes"][0]["at"])
    assert parse_iso("2026-11-12T14:02:00Z") <= changed_at < parse_iso("2026-11-12T14:10:00Z")
    narrative = state["narratives"][incident["id"]]
    assert f"It began within the hour after {CHANGE_LINE}" in narrative

    report = serve.deliver()
    assert report.sent >= 1 and report.failed == 0
    posts = [call for call in serve.fake.calls_to("chat.postMessage") if "Purchase" in json.dumps(call.args)]
    [post] = [call for call in posts if CHANGE_LINE in json.dumps(call.args["blocks"])]
    blocks = post.args["blocks"]
    text = json.dumps(json.loads(blocks) if isinstance(blocks, str) else blocks)
    assert "*Changed just before*" in text and f"2026-11-12 {changed_at:%H:%M} UTC: {CHANGE_LINE}" in text

    row = next(r for r in serve.outbox() if r.message_ts and CHANGE_LINE in json.dumps(r.payload))
    message = message_of(post, row.message_ts)
    before = len(serve.fake.calls_to("chat.postMessage"))
    event = message_event(channel=CHANNEL, user=APPROVER, text="What changed yesterday?", ts="1763640000.000200",
                          thread_ts=message["ts"])
    assert serve.app.dispatch(bolt_request(event_body(event), SECRET)).status == 200
    [reply] = serve.fake.calls_to("chat.postMessage")[before:]
    assert CHANGE_LINE in reply.args["text"] and reply.args["thread_ts"] == message["ts"]


def test_the_relay_records_the_senders_software_and_its_change_over_http(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    customer_agent = "Mozilla/5.0 (CanaryPhone; like Gecko)"
    with running_relay(ledger_engine, meta_sim.url) as relay:
        for number, version in enumerate(("3.2.1", "3.3.0")):
            # The PHP SDK's way: a form body, the token in the query string, its own User-Agent.
            form = {"data": json.dumps([make_event(f"r-{number}", client_user_agent=customer_agent)]),
                    "partner_agent": f"woo-capi-{version}"}
            response = httpx.post(f"{relay}/v25.0/{PIXEL}/events", params={"access_token": SIM_TOKEN}, data=form,
                                  headers={"User-Agent": "fbbizsdk-php-v17.0.0"}, timeout=10)
            assert response.status_code == 200, response.text
    now = utcnow()
    with Session(ledger_engine) as session:
        senders = load_senders(session, pixel_id=PIXEL)
        changes = load_sender_changes(session, pixel_id=PIXEL, since=now.replace(year=now.year - 1), until=now)
    assert [(s["label"], s["sdk"], s["sdk_version"], s["user_agent"]) for s in senders][-1] == (
        "woo-capi 3.2.1", "facebook-php-business-sdk", "17.0.0", "fbbizsdk-php-v17.0.0")
    assert [c.describe() for c in changes] == [CHANGE_LINE]
    with ledger_engine.connect() as connection:
        dump = "\n".join(repr(tuple(row)) for table in ("sender_identities", "sender_fingerprints", "sender_changes")
                         for row in connection.execute(text(f"SELECT * FROM {table}")))
    assert SIM_TOKEN not in dump and "CanaryPhone" not in dump and "someone@example.com" not in dump
