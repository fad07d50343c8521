"""``capi-agent eval`` for real: two scenarios (short history) through the audit graph with the
offline reasoner, the JSON report's contract, and the floors' exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import build_app

TOP_LEVEL = {"root_cause_accuracy", "detection_rate", "median_hours_to_detect", "false_alarms_per_pixel_week",
             "unsafe_actions", "tokens_per_audit", "fix_correctness", "scenarios", "confusion", "families",
             "missed", "false_incidents_per_pixel_week", "false_incidents_per_pixel_week_real_demand",
             "within_target_rate", "extra_incident_rate"}


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    folder = tmp_path_factory.mktemp("eval")
    floors = folder / "floors.json"
    # An unreachable floor: the run must exit 1 and say which floor broke.
    floors.write_text(json.dumps({"root_cause_accuracy": 1.01, "unsafe_actions_max": 0}))
    out = folder / "report.json"
    result = CliRunner().invoke(build_app(), [
        "eval", "--only", "missed_batch.v1,healthy_batch_sender.v1", "--days", "4", "--healthy-hours", "2",
        "--max-hours", "2", "--offline", "--format", "json", "--floors", str(floors), "--out", str(out),
        "--runs-out", str(folder / "runs.json")])
    return result.exit_code, json.loads(result.stdout), out


def test_eval_json_carries_the_overall_metrics_and_one_row_per_scenario(eval_run: tuple[int, dict, Path]) -> None:
    _, report, out = eval_run
    assert set(report) >= TOP_LEVEL
    assert json.loads(out.read_text()) == report
    rows = {row["id"]: row for row in report["scenarios"]}
    assert set(rows) == {"missed_batch.v1", "healthy_batch_sender.v1"}
    missed = rows["missed_batch.v1"]
    # The missed hour is flagged at the first audit after it, with the right cause and a replay proposal.
    assert missed["detected"] and missed["hours_to_detect"] == 1 and missed["root_cause_correct"]
    assert missed["proposals"] >= 1 and missed["proposals_correct"] == missed["proposals"]
    assert rows["healthy_batch_sender.v1"]["audited_hours"] == 2
    assert report["detection_rate"] == 1.0 and report["median_hours_to_detect"] == 1
    assert report["tokens_per_audit"] == 0  # the offline reasoner spends no tokens
    assert report["confusion"] == {"missed_batch": {"missed_batch": 1}}
    family = report["families"]["classic_missed_batch"]
    assert family["scenarios"] == family["detected"] == family["within_target"] == 1
    assert family["median_hours_to_detect"] == family["worst_hours_to_detect"] == 1


def test_eval_never_acts_without_a_person(eval_run: tuple[int, dict, Path]) -> None:
    _, report, _ = eval_run
    assert report["unsafe_actions"] == 0 and all(row["unsafe_actions"] == 0 for row in report["scenarios"])


def test_eval_exits_1_below_a_floor(eval_run: tuple[int, dict, Path]) -> None:
    exit_code, report, _ = eval_run
    assert exit_code == 1
    assert [f.split(" ")[0] for f in report["floor_failures"]] == ["root_cause_accuracy"]


def test_saved_runs_score_again_without_running(eval_run: tuple[int, dict, Path]) -> None:
    _, report, out = eval_run
    result = CliRunner().invoke(build_app(), ["eval", "--from-runs", str(out.parent / "runs.json"), "--format",
                                              "json"])
    assert result.exit_code == 0
    again = json.loads(result.stdout)
    assert {k: v for k, v in again.items() if k not in ("options", "floor_failures")} == {
        k: v for k, v in report.items() if k not in ("options", "floor_failures")}


def test_eval_rejects_an_unknown_scenario_id() -> None:
    result = CliRunner().invoke(build_app(), ["eval", "--only", "no_such.v1"])
    assert result.exit_code == 2


def _listed(*args: str) -> list[tuple[str, str]]:
    result = CliRunner().invoke(build_app(), ["eval", "--list", *args])
    assert result.exit_code == 0, result.output
    return [tuple(line.split("\t")) for line in result.stdout.splitlines()]  # type: ignore[misc]


def test_eval_runs_named_subsets_families_and_seeded_samples() -> None:
    ci = _listed("--subset", "ci")
    families = {family for _, family in ci}
    failure = {f for f in families if not f.startswith("healthy")}
    assert 15 <= len(ci) <= 30 and len(ci) == len(failure) + 6  # one per failure family, 6 healthy shops
    assert {"healthy_real_demand", "healthy_demand_events", "past_unsent_gap", "preexisting_failure"} <= families
    clock = _listed("--family", "clock_skew")
    assert len(clock) == 6 and {f for _, f in clock} == {"clock_skew"}
    sample = _listed("--sample", "1", "--seed", "5")
    assert len(sample) == len({f for _, f in sample}) == len({f for _, f in _listed()})
    assert sample == _listed("--sample", "1", "--seed", "5") != _listed("--sample", "1", "--seed", "6")
