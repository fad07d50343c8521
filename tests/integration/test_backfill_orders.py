"""backfill_from_orders: Purchases rebuilt from the shop's orders that have none, planned, previewed,
approved and executed through the journal, against the Graph API simulator over loopback.

The simulator's received events are the proof of what reached "Meta"; its hourly server counts are
what the verification compares with the orders."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from sqlalchemy import Engine, select, text
from sqlmodel import Session

import agent.graphs.fix as fix_graph
from tests.fakes.crash import send_then_die
from tests.fixtures.db import PIXEL, sha
from tests.fixtures.meta import SIM_TOKEN
from tests.integration.test_fixes_support import AT, approved, event, received_ids, sessions
from tools.checks.types import Finding, finding_fingerprint
from tools.fixes.execute import execute_fix, release_uncertain
from tools.fixes.planner import get_proposal, propose_fix
from tools.fixes.preview import build_preview, records_text
from tools.fixes.trail import trail
from tools.ledger.deliveries import record_delivery
from tools.ledger.ingest import parse_order_line, store_orders
from tools.ledger.models import Delivery, Event, Order
from tools.ledger.store import DeliveryOutcome, IncomingEvent, store_events
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator
from tools.timeutil import floor_hour, to_iso, to_unix

KIND = "backfill_from_orders"
SIM_NOW = AT  # the clock of the simulator fixture ``sim``
WEEK = {"since": to_iso(AT - timedelta(days=7)), "until": to_iso(AT)}
BASE = AT - timedelta(days=2)


def email(i: int) -> str:
    return f"Buyer{i}@Example.com"


def order(i: int, created_at: datetime, *, value: float | None = None, customer: bool = True,
          currency: str | None = "EUR") -> dict[str, Any]:
    """An order as the ledger stores it, parsed from its JSONL line (raw e-mail in the line)."""
    line: dict[str, Any] = {"order_id": f"o-{i}", "pixel_id": PIXEL, "created_at": to_iso(created_at),
                            "value": value if value is not None else 20.0 + i, "currency": currency}
    if customer:
        line["user_data"] = {"em": email(i), "client_user_agent": "Mozilla/5.0"}
    return parse_order_line(json.dumps(line))


def add_orders(engine: Engine, orders: Sequence[dict[str, Any]]) -> None:
    with Session(engine) as session:
        store_orders(session, list(orders))
        session.commit()


def store_purchases(engine: Engine, events: Sequence[dict[str, Any]], client: GraphClient | None = None) -> None:
    """Purchases the shop's server did send: in the ledger as delivered (and at Meta when ``client``)."""
    if client is not None:
        client.send_events(PIXEL, list(events))
    with Session(engine) as session:
        stored = store_events(session, [IncomingEvent(pixel_id=PIXEL, received_at=AT - timedelta(days=3),
                                                      event=e) for e in events])
        ids = [row for row in stored.event_row_ids if row is not None]
        record_delivery(session, pixel_id=PIXEL, event_row_ids=ids, outcome=DeliveryOutcome(
            status="delivered", attempted_at=AT - timedelta(days=3), http_status=200, events_received=len(ids)))
        session.commit()


def purchase_for(i: int, when: datetime, *, with_order_id: bool = True, value: float | None = None
                 ) -> dict[str, Any]:
    e = event(i, event_time=when, user_data={"em": [sha(email(i).strip().lower())],
                                             "client_user_agent": "Mozilla/5.0"})
    e["custom_data"] = {"currency": "EUR", "value": value if value is not None else 20.0 + i}
    if with_order_id:
        e["custom_data"]["order_id"] = f"o-{i}"
    return e


def preview(engine: Engine, params: dict[str, Any] | None = None, at: datetime = AT):
    with Session(engine) as session:
        return build_preview(session, pixel_id=PIXEL, kind=KIND, params=params or WEEK, at=at)


def test_selection_leaves_out_orders_that_have_a_purchase_and_respects_the_window(ledger_engine: Engine) -> None:
    hour = BASE
    add_orders(ledger_engine, [
        order(0, hour), order(1, hour + timedelta(minutes=5)),  # lost: to rebuild
        order(2, hour + timedelta(minutes=10)),  # Purchase with its order id as custom_data.order_id
        order(3, hour + timedelta(minutes=15)),  # Purchase with the order id as event_id
        order(4, hour + timedelta(minutes=20)),  # Purchase without an order id: same time, value, customer
        order(5, hour + timedelta(minutes=25), value=99.0),  # one without id, other customer and value
        order(6, AT - timedelta(days=7, minutes=-2)),  # older than Meta's 7 days by the time it is sent
        order(7, AT - timedelta(minutes=20)),  # too recent: its own Purchase may still come
        order(8, hour, customer=False),  # nothing to match a person with: Meta would refuse the batch
        order(9, hour, currency=None),
        order(10, AT - timedelta(days=9)),  # outside the window
    ])
    by_event_id = purchase_for(3, hour + timedelta(minutes=15), with_order_id=False)
    by_event_id["event_id"] = "o-3"
    store_purchases(ledger_engine, [
        purchase_for(2, hour + timedelta(minutes=10)), by_event_id,
        purchase_for(4, hour + timedelta(minutes=23), with_order_id=False),
        purchase_for(50, hour + timedelta(minutes=25), with_order_id=False, value=99.0)])

    shown = preview(ledger_engine)

    assert sorted(shown.refs) == ["o-0", "o-1", "o-5"]
    assert shown.total_events == 3 and shown.requests == 1
    assert shown.value_by_currency == {"EUR": 20.0 + 21.0 + 99.0}
    assert {s.reason: s.count for s in shown.skipped} == {
        "purchase_in_ledger": 2, "purchase_matched_by_time_value": 1, "too_old": 1, "too_recent": 1,
        "no_customer_information": 1, "no_currency": 1}
    assert [(row.event_name, row.hour, row.count) for row in shown.by_event_hour] == [
        ("Purchase", floor_hour(hour), 3)]
    # What the person approving reads (Slack's proposal summary).
    assert records_text(shown) == "orders o-0, o-1, o-5 (value 140.00 EUR)"
    assert records_text(shown, shown=1) == "orders o-0 and 2 more (value 140.00 EUR)"
    # A narrower window keeps to it.
    narrow = preview(ledger_engine, {"since": to_iso(hour + timedelta(minutes=1)), "until": to_iso(AT)})
    assert sorted(narrow.refs) == ["o-1", "o-5"]


def test_only_purchase_events_and_no_raw_customer_data(ledger_engine: Engine) -> None:
    with pytest.raises(ValueError, match="Purchase"):
        preview(ledger_engine, {**WEEK, "event_names": ["Lead"]})
    line = {"order_id": "o-ip", "pixel_id": PIXEL, "created_at": to_iso(BASE), "value": 5, "currency": "EUR",
            "user_data": {"em": email(0), "ph": "+1 (650) 555-1212", "client_ip_address": "203.0.113.77"}}
    add_orders(ledger_engine, [parse_order_line(json.dumps(line))])
    with ledger_engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM orders")))
    for raw in (email(0), email(0).lower(), "555-1212", "203.0.113.77"):
        assert raw not in dump
    assert sha(email(0).strip().lower()) in dump and sha("16505551212") in dump


def test_executes_once_sends_the_orders_as_purchases_and_a_second_run_or_proposal_sends_nothing(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    add_orders(ledger_engine, [order(i, BASE + timedelta(minutes=7 * i)) for i in range(5)])
    store_purchases(ledger_engine, [purchase_for(0, BASE)])
    proposal_id = approved(ledger_engine, kind=KIND, params=WEEK)

    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                         batch_size=2)

    assert (result.sent, result.received, result.requests, result.finished) == (4, 4, 2, True)
    sent = {item["event"]["event_id"]: item["event"] for item in sim.state.received(PIXEL)}
    assert sorted(sent) == ["o-1", "o-2", "o-3", "o-4"]
    rebuilt = sent["o-2"]
    assert rebuilt["event_name"] == "Purchase"
    assert rebuilt["event_time"] == to_unix(BASE + timedelta(minutes=14))
    assert rebuilt["custom_data"] == {"value": 22.0, "currency": "EUR", "order_id": "o-2"}
    assert rebuilt["user_data"]["em"] == sha(email(2).strip().lower())
    with Session(ledger_engine) as session:
        assert all(session.scalars(select(Order.matched)))
        stored = session.scalars(select(Event).where(Event.event_id.in_(list(sent)))).all()
        assert sorted(e.delivery_status for e in stored) == ["delivered"] * 4
        # Recorded as arriving when the order was taken: no days-late arrivals for the latency check.
        assert all(e.received_at == e.event_time for e in stored)
        assert session.scalar(select(Delivery.events_sent).where(Delivery.fix_id == proposal_id).limit(1)) == 2

    again = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert again == result
    with Session(ledger_engine) as session:
        second = propose_fix(session, pixel_id=PIXEL, kind=KIND, params=WEEK, at=AT + timedelta(minutes=5))
    assert second.preview.total_events == 0
    assert {s.reason: s.count for s in second.preview.skipped} == {"purchase_in_ledger": 5}
    assert set(received_ids(sim).values()) == {1}


def test_orders_held_by_another_backfill_are_not_planned_twice(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    add_orders(ledger_engine, [order(i, BASE + timedelta(minutes=i)) for i in range(3)])
    first = approved(ledger_engine, kind=KIND, params=WEEK)
    second = approved(ledger_engine, kind=KIND, params=WEEK)
    real_send = GraphClient.send_events

    def die(self: GraphClient, pixel_id: str, events: Any, **kw: Any) -> Any:
        real_send(self, pixel_id, events, **kw)
        raise RuntimeError("process killed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GraphClient, "send_events", die)
        with pytest.raises(RuntimeError):
            execute_fix(sessions(ledger_engine), proposal_id=first, client=graph_client, at=AT)
    # The first run's chunk is "sending" (then uncertain): Meta may have these orders' Purchases.
    result = execute_fix(sessions(ledger_engine), proposal_id=second, client=graph_client, at=AT)
    assert result.sent == 0 and result.skipped_by_reason == {"in_another_fix": 3}
    assert set(received_ids(sim).values()) == {1}


# --- end to end through the fix graph ------------------------------------------------------------


def meta_counts_finding(sim: RunningSimulator, engine: Engine) -> list[Finding]:
    """A verification against Meta: hours where Meta counts fewer server Purchases than orders."""
    meta = {hour: names.get("Purchase", 0)
            for hour, names in sim.state.stats(PIXEL, "server", AT - timedelta(days=7), AT)}
    with Session(engine) as session:
        orders = Counter(floor_hour(t) for t in session.scalars(select(Order.created_at)))
    short = sorted(hour for hour, count in orders.items() if meta.get(hour, 0) < count)
    if not short:
        return []
    return [Finding(id="f_meta", pixel_id=PIXEL, check="parity", code="parity.orders_unmatched",
                    event_name="Purchase", severity="warning", summary=f"{len(short)} hour(s) short",
                    window_start=AT - timedelta(hours=1), window_end=AT,
                    fingerprint=finding_fingerprint(PIXEL, "parity", "parity.orders_unmatched", "Purchase"))]


@pytest.mark.parametrize("crash", ["after_send", "before_send"])
def test_fix_graph_backfill_with_a_crash_half_way_resumes_without_sending_anything_twice(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient, monkeypatch: pytest.MonkeyPatch,
        crash: str) -> None:
    orders = [order(i, BASE + timedelta(minutes=9 * i)) for i in range(12)]
    add_orders(ledger_engine, orders)
    store_purchases(ledger_engine, [purchase_for(i, BASE + timedelta(minutes=9 * i)) for i in range(4)],
                    client=graph_client)
    before = meta_counts_finding(sim, ledger_engine)
    assert before  # Meta is short of Purchases for the orders 4..11
    with Session(ledger_engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind=KIND, params=WEEK, at=AT)
    assert proposal.preview.total_events == 8
    assert proposal.preview.refs == [f"o-{i}" for i in range(4, 12)]

    graph = fix_graph.build_fix_graph(checkpointer=InMemorySaver())
    context = fix_graph.FixContext(
        session_factory=sessions(ledger_engine),
        # A new client per run: the graph closes the one it is given when the run ends.
        client_for_pixel=lambda _pixel: GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=2.0,
                                                    max_retries=2, sleep=lambda _seconds: None),
        rerun_checks=lambda _pixel, _at, _checks: meta_counts_finding(sim, ledger_engine),
        clock=lambda: AT, batch_size=3)
    config = {"configurable": {"thread_id": proposal.id}}
    state = graph.invoke({"proposal_id": proposal.id, "audit_at": to_iso(AT),
                          "before_findings": [f.model_dump(mode="json") for f in before]},
                         config=config, context=context)
    assert state["__interrupt__"][0].value["proposal"]["kind"] == KIND
    assert sim.state.received(PIXEL)[4:] == []  # nothing runs before a person answers

    real_send = GraphClient.send_events

    monkeypatch.setattr(GraphClient, "send_events", send_then_die(crash))
    with pytest.raises(RuntimeError, match="process killed"):
        graph.invoke(Command(resume={"action": "approve", "by": "U0APPROVER"}), config=config, context=context)
    monkeypatch.setattr(GraphClient, "send_events", real_send)
    with Session(ledger_engine) as session:
        assert get_proposal(session, proposal.id).status == "executing"  # type: ignore[union-attr]

    # The restarted process: the decided run goes on from the journal.
    state = graph.invoke({"proposal_id": proposal.id}, config=config, context=context)

    assert state["outcome"] == "executed"
    assert state["result"]["uncertain"] == 3 and state["result"]["sent"] == 5
    counts = received_ids(sim)
    assert set(counts.values()) == {1}  # nothing twice
    expected = 12 if crash == "after_send" else 9
    assert len(counts) == expected
    # Another backfill proposed now leaves the uncertain chunk's orders alone (a person decides them).
    with Session(ledger_engine) as session:
        later = propose_fix(session, pixel_id=PIXEL, kind=KIND, params=WEEK, at=AT + timedelta(minutes=1))
        actions = [entry.action for entry in trail(session, proposal.id)]
    assert later.preview.total_events == 0
    assert {s.reason: s.count for s in later.preview.skipped}.get("in_another_fix") == 3
    assert "chunk_uncertain" in actions and actions.count("execution_started") == 1
    if crash == "after_send":
        assert state["verification"]["resolved"] is True  # Meta's counts now cover every order
        return
    assert state["verification"]["resolved"] is False  # the uncertain chunk's orders are still short
    # A person checked Meta, found them missing and released the chunk; the run completes it once.
    with Session(ledger_engine) as session:
        assert release_uncertain(session, proposal_id=proposal.id, actor="U0APPROVER", at=AT) == [1]
    state = graph.invoke({"proposal_id": proposal.id}, config=config, context=context)
    assert state["outcome"] == "executed" and state["result"]["uncertain"] == 0
    assert state["verification"]["resolved"] is True
    counts = received_ids(sim)
    assert len(counts) == 12 and set(counts.values()) == {1}
