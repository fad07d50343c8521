"""Orders without Purchases, end to end: a shop whose server Purchase pipeline stops while its orders
go on (the orders carry their customer, hashed), generated and loaded through ``ingest`` (events and
orders), audited by the agent as ``capi-agent serve`` does, announced in Slack (fake Slack Web API)
with the backfill's preview (how many, which orders, their value), approved by a click, sent by the
fix graph to the Graph API simulator and verified. Nothing reaches Meta before the click; a second
click sends nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agentworld import WorldTemplate, proposal_of, received_events, world_template
from tests.e2e.test_serve_world import (
    APPROVER,
    ServeWorld,
    message_of,
)
from tools.fixes.kinds.backfill_from_orders import SETTLE
from tools.synth.people import normalized_email
from tools.synth.records import ORDER_CUSTOMER_KEYS, order_line
from tools.synth.scenario import Scenario
from tools.synth.shop import ShopConfig
from tools.synth.traffic import simulate_traffic
from tools.timeutil import UTC, parse_iso, to_iso

ONSET = "2026-11-12T13:02:00Z"
SCENARIO = Scenario.model_validate({
    "id": "orders_backfill_e2e.v1", "description": "The order webhook's Purchases stop; orders go on",
    "seed": 23, "pixel_id": "1200000023", "start": "2026-11-06T00:00:00Z", "days": 7,
    "audit_at": "2026-11-12T17:05:00Z",
    "injections": [{"cause": "server_events_down", "onset": ONSET, "events": ["Purchase"]}],
    "expect": {"root_causes": ["server_events_down"], "healthy": False}})
KIND = "backfill_from_orders"



@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> WorldTemplate:
    return world_template(SCENARIO, tmp_path_factory)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lost_orders(serve: ServeWorld, since: str) -> dict[str, dict[str, Any]]:
    """The orders a backfill should rebuild, read from the generated files themselves: from the
    proposal's start, settled by the audit, with a customer, and no server Purchase in events.jsonl."""
    files = serve.world.files
    purchases = {line["event"]["custom_data"].get("order_id") for line in lines(files.events_path)
                 if line["event"]["event_name"] == "Purchase"}
    audit_at = SCENARIO.audit_at
    return {o["order_id"]: o for o in lines(files.orders_path)
            if parse_iso(since) <= parse_iso(o["created_at"]) < audit_at - SETTLE
            and o.get("user_data") and o["order_id"] not in purchases}


def test_synth_orders_carry_a_copy_of_their_purchases_hashed_customer() -> None:
    start = datetime(2026, 11, 10, tzinfo=UTC)
    traffic = simulate_traffic(ShopConfig(full_user_data=True), start=start, end=start + timedelta(days=1), seed=5)
    purchases = {r.event["custom_data"]["order_id"]: r for r in traffic.server if r.name == "Purchase"}
    known = [o for o in traffic.orders if o.user_data]
    assert len(known) >= 0.5 * len(traffic.orders)
    for order in traffic.orders:
        record = purchases.get(order.order_id)
        if record is None or record.customer is None:
            assert order.user_data is None  # no Purchase sent, or a guest: nothing to copy, nothing drawn
            continue
        user = record.event["user_data"]
        assert order.user_data == {k: user[k] for k in ORDER_CUSTOMER_KEYS if k in user}
        assert {"client_ip_address", "client_user_agent", "fbc", "fbp"}.isdisjoint(order.user_data)
    # A copy: an injection that later rewrites the event leaves the order as the customer gave it.
    order = known[0]
    purchases[order.order_id].event["user_data"]["country"][0] = "spoiled"
    assert order.user_data is not None and order.user_data["country"] != ["spoiled"]
    line = order_line("1234567890", order)
    assert all(len(v) == 64 and "@" not in v for values in line["user_data"].values() for v in values)
    customer = purchases[order.order_id].customer
    assert customer is not None and normalized_email(customer) not in json.dumps(line)


@pytest.mark.slow
def test_orders_without_purchases_are_rebuilt_after_a_click_in_slack_once(serve: ServeWorld) -> None:
    state = serve.audit()
    [incident] = [i for i in state["report"]["incidents"] if "Purchase" in i["event_names"]]
    assert incident["root_cause"] == "server_events_down"
    [proposal] = [p for p in state["proposals"] if p["kind"] == KIND]
    proposal_id = proposal["id"]
    preview = proposal_of(serve.world, proposal_id).preview
    expected = lost_orders(serve, to_iso(preview.since))
    assert parse_iso(ONSET) - timedelta(hours=1) <= preview.since <= parse_iso(ONSET)
    assert preview.total_events == len(expected) >= 5
    assert sorted(preview.refs) == sorted(expected)
    value = round(sum(o["value"] for o in expected.values()), 2)
    assert preview.value_by_currency == {"EUR": pytest.approx(value)}
    assert received_events(serve.world) == [], "nothing goes to Meta before a person approves"

    report = serve.deliver()
    assert report.sent >= 1 and report.failed == 0
    [post] = [c for c in serve.fake.calls_to("chat.postMessage") if proposal_id in json.dumps(c.args["blocks"])]
    blocks_text = json.dumps(post.args["blocks"])
    assert f"{preview.total_events} events" in blocks_text
    assert f"(value {value:,.2f} EUR)" in blocks_text
    assert all(ref in blocks_text for ref in preview.refs[:10])
    row = next(r for r in serve.outbox() if r.message_ts and proposal_id in json.dumps(r.payload))
    message = message_of(post, row.message_ts)
    assert received_events(serve.world) == []

    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200
    sent = received_events(serve.world)
    assert sorted(e["event_id"] for e in sent) == sorted(expected)
    assert {e["event_name"] for e in sent} == {"Purchase"}
    for event in sent:
        order = expected[event["event_id"]]
        assert event["event_time"] == int(parse_iso(order["created_at"]).timestamp())
        assert event["custom_data"]["value"] == order["value"]
        assert {k: event["user_data"][k] for k in order["user_data"]} == order["user_data"]
    done = proposal_of(serve.world, proposal_id)
    assert done.status == "executed"
    assert done.result is not None and (done.result.sent, done.result.received) == (len(expected), len(expected))
    [update] = serve.fake.calls_to("chat.update")
    text = json.dumps(update.args["blocks"])
    assert f"Approved by <@{APPROVER}>" in text and f"sent {len(expected)}, Meta received {len(expected)}" in text
    assert "verification:" in text
    # Verified: Meta's server Purchases are back beside the browser's; the orders that could not be
    # rebuilt (guests, the last hour's) keep the orders finding open, and say so.
    check = done.verification
    assert check is not None and check.check == "parity"
    assert "parity.server_below_browser:Purchase" in check.before["codes"]
    assert "parity.server_below_browser:Purchase" not in check.after["codes"]

    # A second click: already decided, nothing sent again.
    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200
    assert len(received_events(serve.world)) == len(expected)
    assert len(serve.fake.calls_to("chat.update")) == 1

