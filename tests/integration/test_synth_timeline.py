"""No future leak: the eval's world at hour H holds only what existed at H, in the ledger and at Meta."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from evals.harness import replay_world
from tools.ledger.models import Event, Order
from tools.synth.inject import Injection
from tools.synth.scenario import Scenario
from tools.synth.shop import ShopConfig
from tools.synth.timeline import build_timeline
from tools.timeutil import HOUR, floor_hour, parse_iso

ONSET = parse_iso("2026-11-12T10:00:00Z")


def _late_scenario() -> Scenario:
    return Scenario.model_validate({
        "id": "late_probe.v1", "description": "events held back about five hours", "seed": 7,
        "pixel_id": "1100009999", "timezone": "UTC", "start": "2026-11-10T00:00:00Z", "days": 3,
        "injections": [{"cause": "late_delivery", "onset": "2026-11-12T10:00:00Z", "magnitude": 5.0}],
        "audit_at": "2026-11-12T20:00:00Z",
        "expect": {"root_causes": ["late_delivery"], "healthy": False}})


def test_timeline_views_hold_only_what_existed_at_that_hour() -> None:
    timeline = build_timeline(ShopConfig(pixel_id="42"), start=ONSET - 24 * HOUR, end=ONSET + 12 * HOUR, seed=3,
                              injections=[Injection(cause="late_delivery", onset=ONSET, magnitude=4.0)])
    at = ONSET + 2 * HOUR
    seen = timeline.received_by(at)
    assert seen and all(r.received_at <= at for r in seen)
    assert all(a.at <= at for r in seen for a in (r.attempts or []))
    assert all(h.time < at for h in timeline.browser_by(at)) and all(o.created_at < at for o in timeline.orders_by(at))
    state = timeline.meta_state_at(at)["pixels"]["42"]
    late_hour = floor_hour(ONSET).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Everything of the onset hour is still queued at ``at``: Meta has nothing for it yet ...
    assert not [row for row in state["server_hours"] if row["hour"] == late_hour]
    # ... and counts it once the delayed sends happened.
    later = timeline.meta_state_at(ONSET + 8 * HOUR)["pixels"]["42"]
    assert [row for row in later["server_hours"] if row["hour"] == late_hour]


def test_an_event_delivered_after_the_audit_hour_is_invisible_to_that_audit(tmp_path: Path) -> None:
    scenario = _late_scenario()
    with replay_world(scenario, tmp_path) as world:
        timeline = world.timeline
        # A server event of the onset hour, received at once but delivered hours later.
        record = next(r for r in timeline.traffic.server if r.true_time >= ONSET and r.attempts)
        delivered_at = record.attempts[-1].at
        audit_at = floor_hour(record.received_at) + 2 * HOUR
        assert record.received_at <= audit_at < delivered_at
        world.advance(audit_at)
        with Session(world.engine) as session:
            row = session.execute(select(Event.delivery_status, Event.attempts).where(
                Event.event_id == record.event["event_id"])).one()
            assert row.delivery_status == "pending" and row.attempts == 0
            # Nothing received after the audit time is in the ledger, no order taken after it either.
            assert session.scalar(select(func.max(Event.received_at))) <= audit_at.replace(tzinfo=None)
            assert session.scalar(select(func.count()).select_from(Event)) == timeline.received_count(audit_at)
            assert session.scalar(select(func.count()).select_from(Order)) == len(timeline.orders_by(audit_at))
        hour = floor_hour(record.true_time)
        stats = world.simulator.state.stats(scenario.pixel_id, "server", hour, hour + HOUR)
        counted_then = sum(counts.get(record.name, 0) for _, counts in stats)
        # Meta (the simulator) does not count the event before it was delivered ...
        assert counted_then == 0
        world.advance(delivered_at + timedelta(minutes=5))
        with Session(world.engine) as session:
            row = session.execute(select(Event.delivery_status, Event.attempts).where(
                Event.event_id == record.event["event_id"])).one()
            assert row.delivery_status == "delivered" and row.attempts == 1
        stats = world.simulator.state.stats(scenario.pixel_id, "server", hour, hour + HOUR)
        # ... and does once it was.
        assert sum(counts.get(record.name, 0) for _, counts in stats) >= 1


def test_meta_state_fed_hour_by_hour_equals_meta_state_at_that_hour(tmp_path: Path) -> None:
    from tools.meta.simulator.state import SimState

    scenario = _late_scenario()
    with replay_world(scenario, tmp_path) as world:
        for at in [ONSET - 2 * HOUR, ONSET + HOUR + timedelta(minutes=5), ONSET + 4 * HOUR, ONSET + 9 * HOUR]:
            world.advance(at)
        fresh = SimState.from_dict(world.timeline.meta_state_at(ONSET + 9 * HOUR))
        fed = world.simulator.state
        window = (ONSET - 48 * HOUR, ONSET + 10 * HOUR)
        for source in ("browser", "server"):
            assert fed.stats(scenario.pixel_id, source, *window) == fresh.stats(scenario.pixel_id, source, *window)
        fed_browser, fed_server = fed.snapshot(scenario.pixel_id)
        fresh_browser, fresh_server = fresh.snapshot(scenario.pixel_id)
        assert fed_browser == fresh_browser
        assert {k: (v.count, v.with_event_id, v.match_keys) for k, v in fed_server.items()} == {
            k: (v.count, v.with_event_id, v.match_keys) for k, v in fresh_server.items()}
