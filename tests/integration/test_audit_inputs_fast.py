"""The audit's fast payload loader (``tools.ledger.inputs.load_payload_inputs``) gives exactly what the
reference loader gives (``tools.ledger.payload.load_payload_hours``) on scenarios of the library
audited hour after hour, and the audit's inputs are the same whichever loader read them."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from evals.harness import scenario_world
from tools.audit.runner import gather_inputs
from tools.ledger.inputs import load_payload_inputs
from tools.ledger.payload import load_payload_hours
from tools.synth.scenario import find_scenario
from tools.timeutil import audit_window

# A healthy shop, payload faults (malformed values), a double Purchase (order ids, event ids).
SCENARIOS = ("healthy_few_ad_clicks.v1", "malformed_parameter_03.v1", "order_sent_twice_01.v1")


@pytest.mark.parametrize("scenario_id", SCENARIOS)
def test_fast_payload_loader_matches_the_reference_loader(scenario_id: str, tmp_path: Path) -> None:
    scenario = find_scenario(scenario_id)
    with scenario_world(scenario, tmp_path) as world:
        checked = 0
        for step in range(3):
            at = scenario.audit_at + timedelta(hours=step)
            world.simulator.state.set_now(at)
            world.audit(at)
            _, window_end = audit_window(at)
            with Session(world.engine) as session:
                payload = load_payload_inputs(session, pixel_id=world.pixel.id, window_end=window_end)
                assert payload == load_payload_hours(session, pixel_id=world.pixel.id, window_end=window_end)
                checked += len(payload)
                # The whole of an audit's inputs, read again by the reference loaders, is equal.
                inputs = gather_inputs(session, pixel=world.pixel, at=at, client=None)
                reference = dataclasses.replace(
                    inputs, payload_hours=load_payload_hours(session, pixel_id=world.pixel.id,
                                                             window_end=window_end))
                assert inputs == reference and inputs.payload_hours
        assert checked > 0
