"""The scenario library: every file loads and means what it says, and its audit hour shows the signal."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from evals.evaluate.library import build_library
from tests.integration.test_synth_inject import assert_raw_signal, audit_window, read_output
from tools.diagnosis.types import ROOT_CAUSES
from tools.synth.__main__ import main
from tools.synth.inject import INJECTABLE_CAUSES
from tools.synth.scenario import Scenario, default_scenario_dir, find_scenario, load_scenarios, materialize
from tools.timeutil import DAY, floor_hour

SCENARIOS = load_scenarios()
BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
BROKEN = [scenario.id for scenario in SCENARIOS if not scenario.expect.healthy]
# Records written by hand with the injectors' defaults (whole events, full magnitude, one cause): their
# raw signal is checked here. The generated variants (partial, two causes, other events; see
# evals/evaluate/library.py) are checked end to end by tests/e2e/test_scenarios_e2e.py and the eval.
GENERATED = {scenario.id for scenario in build_library()}
HAND_WRITTEN_BROKEN = [sid for sid in BROKEN if sid not in GENERATED]
HEALTHY = [scenario.id for scenario in SCENARIOS if scenario.expect.healthy]


def trimmed(scenario: Scenario, days_before: int = 1) -> Scenario:
    """The same scenario generated from the day before its audit: every hour's traffic is seeded by
    the hour, so the audited days are exactly those of the full run, only faster to produce."""
    start = max(scenario.start, floor_hour(scenario.audit_at).replace(hour=0) - days_before * DAY)
    return scenario.model_copy(update={"start": start, "days": (scenario.audit_at - start).days + 1})


def test_library_covers_the_catalogue() -> None:
    assert len(SCENARIOS) == len(list(default_scenario_dir().glob("*.json"))) >= 20
    injected = {inj.cause for scenario in SCENARIOS for inj in scenario.injections}
    assert injected == set(INJECTABLE_CAUSES)
    expected = {cause for scenario in SCENARIOS for cause in scenario.expect.root_causes}
    assert expected == {*INJECTABLE_CAUSES, "none"} and expected <= set(ROOT_CAUSES)
    assert len(HEALTHY) >= 6


@pytest.mark.parametrize("scenario_id", sorted(BY_ID))
def test_scenario_record_is_consistent(scenario_id: str) -> None:
    scenario = BY_ID[scenario_id]
    path = default_scenario_dir() / f"{scenario_id.replace('.', '_')}.json"
    assert json.loads(path.read_text())["id"] == scenario_id  # file named after its id
    assert all(cause in ROOT_CAUSES for cause in scenario.expect.root_causes)
    if scenario.expect.healthy:
        assert scenario.injections == [] and scenario.expect.findings_any == []
    else:
        assert scenario.expect.findings_any or scenario_id in GENERATED  # generated: judged on top-1 alone
        for inj in scenario.injections:
            # At least one full audited hour lies after the onset.
            assert audit_window(scenario.audit_at)[0] >= floor_hour(inj.onset)
            assert inj.cause in scenario.expect.root_causes
    assert scenario.start + DAY <= scenario.audit_at <= scenario.end


def test_hard_but_normal_variation_is_represented() -> None:
    def local(scenario: Scenario):
        return audit_window(scenario.audit_at)[0].astimezone(ZoneInfo(scenario.timezone))

    healthy = [BY_ID[i] for i in HEALTHY]
    assert any(local(s).weekday() >= 5 and s.shop_config().weekend_factor < 1 for s in healthy)
    assert any(local(s).weekday() >= 5 and s.shop_config().weekend_factor > 1 for s in healthy)
    assert any(local(s).hour == 3 for s in healthy)
    assert any(
        spike.multiplier >= 3 and spike.start <= s.audit_at - timedelta(hours=1) < spike.end
        for s in healthy
        for spike in s.shop_config().sales_spikes
    )
    assert any(s.days <= 5 for s in healthy)
    assert any(s.shop_config().batch_interval_minutes for s in healthy)


@pytest.mark.parametrize("scenario_id", HAND_WRITTEN_BROKEN)
def test_broken_scenario_shows_its_raw_signal_in_the_audited_hour(scenario_id: str, tmp_path: Path) -> None:
    scenario = trimmed(BY_ID[scenario_id])
    out = read_output(materialize(scenario, tmp_path))
    for inj in scenario.injections:
        assert_raw_signal(inj, out)


@pytest.mark.parametrize("scenario_id", HEALTHY)
def test_healthy_scenario_delivers_everything(scenario_id: str, tmp_path: Path) -> None:
    scenario = trimmed(BY_ID[scenario_id], days_before=1)
    out = read_output(materialize(scenario, tmp_path))
    start, end = audit_window(scenario.audit_at)
    assert all(line["delivery"]["status"] in ("delivered", "pending") for line in out.lines)
    assert all(
        line["delivery"].get("attempts") == 1
        for line in out.lines
        if line["delivery"]["status"] == "delivered"
    )
    if scenario.family_name == "healthy_classic":  # outages and 20-a-day shops have empty hours by nature
        assert out.meta_count("browser", start, end) > 0 and out.meta_count("server", start, end) > 0
    assert out.state["tokens"]["expired"] == []
    if scenario_id == "healthy_low_volume_lead.v1":
        assert (
            out.meta_count("browser", start, end, ["Lead"])
            == out.meta_count("server", start, end, ["Lead"])
            == 0
        )
        assert out.meta_count("server", start - DAY, start, ["Lead"]) > 0  # yet Lead is a live event


def test_trimmed_run_reproduces_the_full_run(tmp_path: Path) -> None:
    scenario = BY_ID["healthy_short_history.v1"]
    full = read_output(materialize(scenario, tmp_path / "full"))
    short = read_output(materialize(trimmed(scenario, days_before=1), tmp_path / "short"))
    since = floor_hour(scenario.audit_at).replace(hour=0) - DAY
    assert short.ledger(since, scenario.audit_at) == full.ledger(since, scenario.audit_at)
    assert short.meta("server", since, scenario.audit_at) == full.meta("server", since, scenario.audit_at)


def test_cli_writes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # On the library's own dates (--at in the scenario's audit hour) the CLI writes the library's files.
    assert main(["healthy_short_history.v1", "--out", str(tmp_path / "cli"), "--at", "2026-11-12T18:00:00Z"]) == 0
    assert "healthy_short_history.v1" in capsys.readouterr().out
    files = materialize(find_scenario("healthy_short_history.v1"), tmp_path / "api")
    for name in ("events.jsonl", "orders.jsonl", "meta_state.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (files.events_path.parent / name).read_bytes()
    state = json.loads(files.meta_state_path.read_text())
    assert state["now"] == "2026-11-12T18:00:00Z" and list(state["pixels"]) == [files.pixel_id]


def test_module_entry_point_accepts_a_file(tmp_path: Path) -> None:
    record = json.loads((default_scenario_dir() / "healthy_short_history_v1.json").read_text())
    record.update(id="custom_short.v1", start="2026-11-11T00:00:00Z", days=2)
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(record))
    result = subprocess.run(
        [sys.executable, "-m", "tools.synth", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "events.jsonl").stat().st_size > 0


def test_loader_rejects_bad_records(tmp_path: Path) -> None:
    good = json.loads((default_scenario_dir() / "browser_pixel_down_v1.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(good))
    with pytest.raises(ValueError, match="duplicate"):
        load_scenarios(tmp_path)
    for broken in (
        {"expect": {**good["expect"], "root_causes": ["pixel_on_fire"]}},
        {"audit_at": "2026-11-12T12:00:00Z"},  # before the onset
        {"injections": [{**good["injections"][0], "cause": "gremlins"}]},
        {"id": "no version"},
    ):
        with pytest.raises(ValidationError):
            Scenario.model_validate({**good, **broken})
    with pytest.raises(KeyError):
        find_scenario("no_such.v1")
