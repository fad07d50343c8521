"""The whole path on every scenario of the library: generate -> ingest -> simulator over loopback ->
audit. Each catalogue root cause must be found in its scenario; healthy scenarios must stay quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.harness import run_scenario
from tools.diagnosis.types import ROOT_CAUSES
from tools.synth.scenario import Scenario, load_scenarios

SCENARIOS = load_scenarios()


def test_library_covers_every_root_cause_and_healthy_variation() -> None:
    causes = {cause for s in SCENARIOS for cause in s.expect.root_causes}
    assert set(ROOT_CAUSES) - {"none"} <= causes
    assert sum(s.expect.healthy for s in SCENARIOS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario_audit_finds_what_it_expects(scenario: Scenario, tmp_path: Path) -> None:
    outcome = run_scenario(scenario, tmp_path)
    if scenario.expect.healthy:
        serious = [(f["code"], f["event_name"]) for f in outcome.report["findings"]
                   if f["severity"] in ("warning", "critical")]
        assert serious == [] and outcome.found_root_causes == []
    else:
        assert set(outcome.expected_root_causes) <= set(outcome.found_root_causes), outcome.finding_codes
        if scenario.expect.findings_any:
            assert set(scenario.expect.findings_any) & set(outcome.finding_codes), outcome.finding_codes
    # The report keeps the JSON contract other tools read.
    assert set(outcome.report) >= {"window", "pixels", "findings", "incidents"}
    for incident in outcome.report["incidents"]:
        assert incident["root_cause"] in ROOT_CAUSES and 0 <= incident["confidence"] <= 1
        assert set(incident["finding_ids"]) <= {f["id"] for f in outcome.report["findings"]}
