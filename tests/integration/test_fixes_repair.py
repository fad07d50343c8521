"""repair_and_replay drops only the rejected parameter (other fields byte-identical); rehash flips the
relay to repair mode and re-sends with correct hashes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from tests.fixtures.db import PIXEL, sha
from tests.integration.test_fixes_support import AT, VALID_FBC, approved, failed, seed, sessions
from tools.fixes.execute import execute_fix
from tools.fixes.planner import get_proposal
from tools.fixes.repair import repair_parameter
from tools.fixes.trail import trail
from tools.ledger.models import Event, Pixel
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator

H1 = AT - timedelta(hours=4)
BAD_FBC = "fb.1.1763632000.AbCd"  # creation time in seconds: not safely repairable
UD = {"em": [sha("a@example.com")], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
      "fbp": "fb.1.1763600000000.123456"}


def test_repair_keeps_valid_values_and_drops_unrepairable_ones() -> None:
    event = {"event_id": "x", "user_data": {**UD, "fbc": VALID_FBC}}
    assert repair_parameter(event, "fbc") == (event, "kept")
    fixed, action = repair_parameter({"user_data": {"fbc": f" {VALID_FBC} "}}, "fbc")
    assert (fixed["user_data"]["fbc"], action) == (VALID_FBC, "repaired")
    dropped, action = repair_parameter({"user_data": {**UD, "fbc": BAD_FBC}}, "fbc")
    assert action == "dropped" and "fbc" not in dropped["user_data"] and dropped["user_data"] == UD


def test_repair_and_replay_changes_only_the_parameter(ledger_engine: Engine, meta_sim: RunningSimulator,
                                                      graph_client: GraphClient) -> None:
    meta_sim.state.set_now(AT)
    rejected = failed(100, 2804001)
    seed(ledger_engine, 3, event_time=H1, prefix="bad", delivery=rejected, user_data={**UD, "fbc": BAD_FBC})
    seed(ledger_engine, 2, event_time=H1, prefix="ok", delivery=rejected, user_data={**UD, "fbc": VALID_FBC})
    seed(ledger_engine, 2, event_time=H1, prefix="token", delivery=failed(190, 463))
    params = {"since": "2026-11-19T00:00:00Z", "until": "2026-11-20T12:00:00Z", "statuses": ["failed"],
              "parameter": "fbc"}
    proposal_id = approved(ledger_engine, kind="repair_and_replay", params=params)
    with Session(ledger_engine) as session:
        preview = get_proposal(session, proposal_id).preview  # type: ignore[union-attr]
        stored = {row.event_id: row.payload for row in session.scalars(select(Event))}
    assert preview.total_events == 5
    assert [(c.parameter, c.action, c.count) for c in preview.changes] == [("fbc", "dropped", 3)]
    assert {s.reason: s.count for s in preview.skipped} == {"not_rejected_for_parameter": 2}
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert (result.sent, result.failed) == (5, 0)
    sent = {item["event"]["event_id"]: item["event"] for item in meta_sim.state.received(PIXEL)}
    assert set(sent) == {"bad-0", "bad-1", "bad-2", "ok-0", "ok-1"}
    for event_id, event in sent.items():
        original = json.loads(json.dumps(stored[event_id]))
        if event_id.startswith("bad"):
            del original["user_data"]["fbc"]
        assert json.dumps(event, sort_keys=True) == json.dumps(original, sort_keys=True)
    assert sent["ok-0"]["user_data"]["fbc"] == VALID_FBC


def test_rehash_switches_relay_to_repair_and_sends_correct_hashes(
        ledger_engine: Engine, meta_sim: RunningSimulator, graph_client: GraphClient) -> None:
    meta_sim.state.set_now(AT)
    placeholder = {**UD, "em": [sha("")], "ph": [sha("16505551212")]}
    seed(ledger_engine, 4, event_time=H1, prefix="ph", user_data=placeholder)
    proposal_id = approved(ledger_engine, kind="rehash", params={"event_names": ["Purchase"],
                                                                 "fields": ["em"]})
    with Session(ledger_engine) as session:
        preview = get_proposal(session, proposal_id).preview  # type: ignore[union-attr]
    changes = {(c.parameter, c.action): c.count for c in preview.changes}
    assert changes == {("relay_mode", "set_repair"): 1, ("em", "dropped"): 4}
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert result.sent == 4
    for item in meta_sim.state.received(PIXEL):
        user_data = item["event"]["user_data"]
        assert "em" not in user_data and user_data["ph"] == [sha("16505551212")]
    with Session(ledger_engine) as session:
        pixel = session.get(Pixel, PIXEL)
        assert pixel is not None and pixel.settings["relay_mode"] == "repair"
        entries = {e.action: e.detail for e in trail(session, proposal_id)}
    assert entries["relay_mode_changed"] == {"from": "observe", "to": "repair"}


@pytest.mark.parametrize("kind", ["replay", "rehash"])
def test_delivered_events_are_never_resent(kind: str, ledger_engine: Engine, meta_sim: RunningSimulator,
                                           graph_client: GraphClient) -> None:
    from tools.ledger.store import DeliveryOutcome
    meta_sim.state.set_now(AT)
    seed(ledger_engine, 3, event_time=H1, delivery=DeliveryOutcome(status="delivered", attempted_at=H1,
                                                                   http_status=200, events_received=1))
    proposal_id = approved(ledger_engine, kind=kind)
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert (result.sent, result.requests, result.finished) == (0, 0, True)
    assert meta_sim.state.received(PIXEL) == []
