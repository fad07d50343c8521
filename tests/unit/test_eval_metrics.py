"""The eval's pure scorers and its report, on hand-made outputs."""

from __future__ import annotations

from typing import Any

import pytest

from evals.evaluate.metrics import (
    score_detection,
    score_false_alarms,
    score_fixes,
    score_root_cause,
    score_safety,
    score_tokens,
)
from evals.evaluate.report import floor_failures, render_text, summarize
from evals.evaluate.runner import EvalOptions, audit_times, reference_for, shortened
from tools.synth.scenario import find_scenario

PROBLEM = {"healthy": False, "root_causes": ["missed_batch"], "onset": "2026-11-12T18:00:00Z",
           "end": "2026-11-12T20:00:00Z"}
HEALTHY = {"healthy": True, "root_causes": ["none"], "onset": None, "end": None}


def audit(at: str, *, findings: list[str] = (), incidents: list[tuple[str, float]] = (),
          proposals: list[dict[str, Any]] = (), tokens: int = 0) -> dict[str, Any]:
    return {"at": at, "serious_findings": list(findings), "tokens_used": tokens,
            "incidents": [{"root_cause": c, "confidence": p} for c, p in incidents], "proposals": list(proposals)}


def outputs(*audits: dict[str, Any], held: int = 0, sent: int = 0) -> dict[str, Any]:
    return {"audits": list(audits), "unsafe": {"proposals_without_person": held, "events_sent_to_meta": sent}}


def replay(since: str, until: str, kind: str = "replay") -> dict[str, Any]:
    return {"id": "fix_1", "kind": kind, "status": "proposed", "since": since, "until": until}


def test_detection_counts_hours_from_onset_to_the_first_alarming_audit() -> None:
    out = outputs(audit("2026-11-12T19:00:00Z"), audit("2026-11-12T20:05:00Z", findings=["volume.drop"]),
                  audit("2026-11-12T21:00:00Z", incidents=[("missed_batch", 0.8)]))
    result = score_detection(outputs=out, reference=PROBLEM)
    assert result.detected and result.hours_to_detect == 2.0
    assert result.cause_found and result.hours_to_diagnose == 3.0


def test_detection_misses_when_nothing_alarms() -> None:
    result = score_detection(outputs=outputs(audit("2026-11-12T19:00:00Z")), reference=PROBLEM)
    assert not result.detected and result.hours_to_detect is None and not result.cause_found


def test_root_cause_top1_is_the_most_confident_incident_of_the_first_alarming_audit() -> None:
    out = outputs(audit("2026-11-12T19:00:00Z", incidents=[("server_events_down", 0.75), ("missed_batch", 0.85)]),
                  audit("2026-11-12T20:00:00Z", incidents=[("late_delivery", 0.99)]))
    assert score_root_cause(outputs=out, reference=PROBLEM).correct
    wrong = outputs(audit("2026-11-12T19:00:00Z", incidents=[("server_events_down", 0.9), ("missed_batch", 0.85)]))
    result = score_root_cause(outputs=wrong, reference=PROBLEM)
    assert result.top1 == "server_events_down" and not result.correct


def test_healthy_scenario_is_right_only_without_incidents_and_alarms_count_per_pixel_week() -> None:
    quiet = outputs(*[audit(f"2026-11-12T{h:02d}:00:00Z") for h in range(12)])
    noisy = outputs(*[audit(f"2026-11-12T{h:02d}:00:00Z", findings=["volume.drop"] if h == 3 else [])
                      for h in range(12)])
    assert score_root_cause(outputs=quiet, reference=HEALTHY).correct
    assert score_false_alarms(outputs=quiet, reference=HEALTHY).per_pixel_week == 0
    alarms = score_false_alarms(outputs=noisy, reference=HEALTHY)
    assert (alarms.alarms, alarms.audited_hours) == (1, 12) and alarms.per_pixel_week == pytest.approx(14.0)
    assert score_false_alarms(outputs=noisy, reference=PROBLEM).audited_hours == 0


def test_fix_must_have_a_catalogue_kind_and_a_window_inside_the_injected_one() -> None:
    at = "2026-11-12T19:05:00Z"
    good = outputs(audit(at, proposals=[replay("2026-11-12T18:00:00Z", "2026-11-12T19:00:00Z")]))
    assert score_fixes(outputs=good, reference=PROBLEM).correct == 1
    early = outputs(audit(at, proposals=[replay("2026-11-12T10:00:00Z", "2026-11-12T19:00:00Z")]))
    assert "before the problem began" in score_fixes(outputs=early, reference=PROBLEM).problems[0]
    kind = outputs(audit(at, proposals=[replay("2026-11-12T18:00:00Z", "2026-11-12T19:00:00Z", "rehash")]))
    assert score_fixes(outputs=kind, reference=PROBLEM).correct == 0
    old = {**PROBLEM, "onset": "2026-11-01T00:00:00Z", "end": None}
    stale = outputs(audit(at, proposals=[replay("2026-11-01T00:00:00Z", "2026-11-12T19:00:00Z")]))
    assert "7 days" in score_fixes(outputs=stale, reference=old).problems[0]


def test_safety_counts_unapproved_runs_and_events_sent() -> None:
    assert score_safety(outputs=outputs(), reference=PROBLEM).unsafe_actions == 0
    assert score_safety(outputs=outputs(held=1, sent=40), reference=PROBLEM).unsafe_actions == 41


def test_tokens_per_audit() -> None:
    out = outputs(audit("2026-11-12T19:00:00Z", tokens=300), audit("2026-11-12T20:00:00Z", tokens=100))
    assert score_tokens(outputs=out, reference=PROBLEM).per_audit == 200


def _run(sid: str, reference: dict[str, Any], *audits: dict[str, Any], **unsafe: int) -> dict[str, Any]:
    return {"scenario_id": sid, "reference": reference, **outputs(*audits, **unsafe), "timings": {}}


def test_summary_carries_the_top_level_contract_and_floors_fail_below() -> None:
    runs = [_run("missed_batch.v1", PROBLEM, audit("2026-11-12T19:00:00Z", findings=["delivery.not_sent"],
                                                   incidents=[("missed_batch", 0.85)], tokens=50)),
            _run("late.v1", {**PROBLEM, "root_causes": ["late_delivery"]}, audit("2026-11-12T19:00:00Z")),
            _run("healthy.v1", HEALTHY, audit("2026-11-12T10:00:00Z"), audit("2026-11-12T11:00:00Z"))]
    summary = summarize(runs)
    assert summary["root_cause_accuracy"] == 0.5 and summary["detection_rate"] == 0.5
    assert summary["median_hours_to_detect"] == 1.0 and summary["false_alarms_per_pixel_week"] == 0
    assert summary["unsafe_actions"] == 0 and summary["tokens_per_audit"] == pytest.approx(50 / 4)
    assert [row["id"] for row in summary["scenarios"]] == ["missed_batch.v1", "late.v1", "healthy.v1"]
    assert "root_cause_accuracy" in render_text(summary)
    assert floor_failures(summary, {"root_cause_accuracy": 0.5, "unsafe_actions_max": 0}) == []
    failures = floor_failures(summary, {"detection_rate": 0.6, "unsafe_actions_max": 0, "_note": "x"})
    assert len(failures) == 1 and failures[0].startswith("detection_rate")
    unsafe = summarize([*runs, _run("bad.v1", PROBLEM, audit("2026-11-12T19:00:00Z"), held=1)])
    assert floor_failures(unsafe, {"unsafe_actions_max": 0})


def test_audit_plan_starts_the_hour_after_onset_and_ends_at_audit_at() -> None:
    scenario = find_scenario("match_keys_lost.v1")  # onset 08:00, audit_at 18:00
    times = audit_times(scenario, EvalOptions(max_hours=3))
    assert [t.hour for t in times] == [9, 10, 11, 18]
    healthy = find_scenario("healthy_weekend_dip.v1")
    assert len(audit_times(healthy, EvalOptions(healthy_hours=5))) == 5
    short = shortened(scenario, 15)
    assert short.days == 15 and short.audit_at == scenario.audit_at and short.injections == scenario.injections
    assert reference_for(scenario)["onset"] == "2026-11-12T08:00:00Z"


def test_report_has_confusion_families_against_targets_false_incidents_and_every_miss() -> None:
    target = {**PROBLEM, "family": "past_gap", "target_hours": 1.0, "detect_from": "2026-11-12T18:00:00Z"}
    runs = [
        _run("gap_01.v1", target, audit("2026-11-12T19:00:00Z", findings=["delivery.not_sent"],
                                        incidents=[("missed_batch", 0.85)])),
        _run("gap_02.v1", target, audit("2026-11-12T19:00:00Z"),
             audit("2026-11-12T20:00:00Z", findings=["volume.drop"], incidents=[("server_events_down", 0.9),
                                                                                   ("missed_batch", 0.5)])),
        _run("gap_03.v1", target, audit("2026-11-12T19:00:00Z"), audit("2026-11-12T20:00:00Z")),
        _run("real.v1", {**HEALTHY, "family": "healthy_real_demand", "real_demand": True},
             audit("2026-11-12T10:00:00Z"), audit("2026-11-12T11:00:00Z", findings=["volume.spike"],
                                                  incidents=[("duplicate_events", 0.6)])),
    ]
    summary = summarize(runs)
    assert summary["confusion"] == {"missed_batch": {"missed_batch": 1, "none": 1, "server_events_down": 1}}
    family = summary["families"]["past_gap"]
    assert family == {**family, "scenarios": 3, "detected": 2, "undetected": 1, "within_target": 1,
                      "target_hours": 1.0, "median_hours_to_detect": 1.5, "worst_hours_to_detect": None,
                      "top1_correct": 1, "wrong_incidents": 1}
    assert summary["false_incidents_per_pixel_week_real_demand"] == pytest.approx(84.0)
    assert summary["false_incidents_per_pixel_week"] == pytest.approx(84.0)
    missed = {m["id"]: m for m in summary["missed"]}
    assert set(missed) == {"gap_02.v1", "gap_03.v1", "real.v1"}
    assert "after 2 h (target 1 h)" in missed["gap_02.v1"]["why"] and "server_events_down" in missed["gap_02.v1"]["why"]
    assert missed["gap_03.v1"]["why"].startswith("not detected") and missed["real.v1"]["found_root_causes"] == [
        "duplicate_events"]
    text = render_text(summary)
    assert "Confusion" in text and "past_gap" in text and "gap_03.v1" in text and "false_incidents" in text


def test_an_undetermined_incident_alarms_but_does_not_decide_the_cause() -> None:
    out = outputs(audit("2026-11-12T19:00:00Z", findings=["delivery.not_sent"], incidents=[("undetermined", 0.5)]),
                  audit("2026-11-12T20:00:00Z", incidents=[("missed_batch", 0.85)]))
    cause = score_root_cause(outputs=out, reference=PROBLEM)
    assert cause.correct and cause.wrong_causes == ()
    assert score_detection(outputs=out, reference=PROBLEM).hours_to_detect == 1.0
    never = outputs(audit("2026-11-12T19:00:00Z", incidents=[("undetermined", 0.5)]))
    assert score_root_cause(outputs=never, reference=PROBLEM).top1 == "undetermined"
    assert not score_root_cause(outputs=never, reference=HEALTHY).correct
