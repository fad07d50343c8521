"""The whole path on a representative subset of the library: generate -> ledger and simulator fed up
to the audited hour (no future leak) -> audit. A problem must come out with exactly the expected top-1
root cause and no incident with any other cause; a healthy shop must raise no warning and no incident.

The subset is small to stay fast (classic records and generated families, real-demand healthy shops);
the whole library is ``capi-agent eval`` (see evals/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.harness import run_scenario
from tools.diagnosis.types import ROOT_CAUSES
from tools.synth.inject import INJECTABLE_CAUSES
from tools.synth.scenario import Scenario, load_scenarios

SCENARIOS = load_scenarios()
E2E_IDS = (
    "missed_batch.v1", "access_token_invalid.v1", "browser_pixel_down.v1", "hashing_error.v1",
    "server_down_total_06.v1", "token_revoked_03.v1", "past_unsent_gap_03.v1", "purchase_renamed_02.v1",
    "healthy_batch_sender.v1", "healthy_real_size_80.v1", "healthy_event_storm_01.v1",
)
E2E = [s for s in SCENARIOS if s.id in E2E_IDS]


def test_library_covers_every_root_cause_and_healthy_variation() -> None:
    causes = {cause for s in SCENARIOS for cause in s.expect.root_causes}
    assert set(INJECTABLE_CAUSES) <= causes
    assert sum(s.expect.healthy for s in SCENARIOS) >= 5
    assert {s.id for s in E2E} == set(E2E_IDS)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", E2E, ids=[s.id for s in E2E])
def test_scenario_audit_finds_exactly_what_it_expects(scenario: Scenario, tmp_path: Path) -> None:
    outcome = run_scenario(scenario, tmp_path)
    incidents = outcome.report["incidents"]
    if scenario.expect.healthy:
        serious = [(f["code"], f["event_name"]) for f in outcome.report["findings"]
                   if f["severity"] in ("warning", "critical")]
        assert serious == [] and outcome.found_root_causes == []
    else:
        top = max(incidents, key=lambda i: i["confidence"], default=None)
        found = (top["root_cause"] if top else None, outcome.found_root_causes)
        assert top is not None and top["root_cause"] in scenario.expect.root_causes, found
        assert set(outcome.found_root_causes) <= set(scenario.expect.root_causes), found  # no extra incident
        if scenario.expect.findings_any:
            assert set(scenario.expect.findings_any) & set(outcome.finding_codes), outcome.finding_codes
    # The report keeps the JSON contract other tools read.
    assert set(outcome.report) >= {"window", "pixels", "findings", "incidents"}
    for incident in incidents:
        assert incident["root_cause"] in ROOT_CAUSES and 0 <= incident["confidence"] <= 1
        assert set(incident["finding_ids"]) <= {f["id"] for f in outcome.report["findings"]}
