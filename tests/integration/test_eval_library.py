"""The scenario library: generated records are on disk exactly as the generator writes them, every
failure family has seeded variants with a detection target, nothing is kept out because it is missed,
and the healthy world runs on real demand, inside NAB's anomaly windows, with demand events."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import evals.evaluate.library as library
from evals.evaluate.families import FAMILIES, SIZES_PER_DAY, scale_for_events_per_day
from evals.evaluate.library import build_library, file_name, render, write_library
from tools.synth.realdemand import anomaly_windows
from tools.synth.scenario import default_scenario_dir, load_scenarios


def test_generated_records_match_the_files_in_the_library() -> None:
    folder = default_scenario_dir()
    for scenario in build_library():
        assert (folder / file_name(scenario)).read_text(encoding="utf-8") == render(scenario), scenario.id


def test_generation_is_reproducible(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_library(tmp_path / "a")]
    second = [p.read_bytes() for p in write_library(tmp_path / "b")]
    assert first == second and len(first) == len(build_library())


def test_library_has_variants_of_every_cause_two_cause_cases_and_twenty_healthy() -> None:
    scenarios = load_scenarios()
    per_cause = Counter(cause for s in scenarios for cause in s.expect.root_causes if cause != "none")
    assert min(per_cause.values()) >= 2, per_cause
    assert any(len(s.expect.root_causes) >= 2 for s in scenarios)
    assert sum(s.expect.healthy for s in scenarios) >= 20
    assert len({s.pixel_id for s in scenarios}) == len(scenarios)  # one pixel per scenario


def test_nothing_is_kept_out_for_being_missed() -> None:
    assert not hasattr(library, "NOT_YET_CAUGHT")
    ids = {s.id for s in load_scenarios()}
    assert {"clock_skew_five_hours.v1", "dedup_broken_browser.v1", "event_renamed_server_purchase.v1",
            "match_keys_lost_phone.v1", "event_renamed_checkout.v1"} <= ids


def test_every_family_has_seeded_variants_with_a_target_and_varied_onsets() -> None:
    scenarios = [s for s in build_library() if s.family in {f.name for f in FAMILIES}]
    by_family: dict[str, list] = {}
    for s in scenarios:
        by_family.setdefault(s.family, []).append(s)
    assert set(by_family) == {f.name for f in FAMILIES}
    for family in FAMILIES:
        members = by_family[family.name]
        assert len(members) == family.count >= 4
        assert all(s.detect_within_hours for s in members)
        if family.target_hours is not None:  # the family's target, longer only where evidence needs it
            assert min(s.detect_within_hours for s in members) == family.target_hours
    onsets = [min(i.onset for i in s.injections) for s in scenarios]
    assert any(o.hour < 6 for o in onsets) and any(o.weekday() >= 5 for o in onsets)  # nights, weekends
    assert len({(o.hour, o.weekday()) for o in onsets}) > 60
    assert len({s.timezone for s in scenarios}) >= 5
    # Partial losses span 30-90%; low-volume losses; renamed Purchase; skew both ways.
    partial = [i.magnitude for s in by_family["pixel_down_partial"] + by_family["server_down_partial"]
               for i in s.injections]
    assert min(partial) >= 0.3 and max(partial) <= 0.9 and max(partial) - min(partial) > 0.3
    assert {i.params["to"] for s in by_family["purchase_renamed"] for i in s.injections} <= {
        "purchase", "Purchased", "checkout_complete"}
    assert {i.params["direction"] for s in by_family["clock_skew"] for i in s.injections} == {"ahead", "behind"}
    assert {s.detect_within_hours for s in by_family["lead_low_volume_lost"]} == {48}


def test_a_target_leaves_an_ideal_test_time_for_seven_nats_of_evidence() -> None:
    from evals.evaluate.families import EVIDENCE_EVENTS, expected_affected, expected_evidence

    for s in build_library():
        if s.family in {f.name for f in FAMILIES} and s.family not in ("preexisting_failure", "past_unsent_gap"):
            config = s.shop_config()
            # The clock starts at the onset, or at the first audit for a failure older than the audits
            # (dedup_reasons' late variant), whose evidence has been accumulating since its onset.
            onset = min(i.onset for i in s.injections)
            clock_from = max(onset, s.first_audit_at - timedelta(hours=1)) if s.first_audit_at else onset
            until = clock_from + timedelta(hours=s.detect_within_hours)
            assert s.detect_within_hours >= 96 or any(
                expected_evidence(config, i, i.onset, until) >= EVIDENCE_EVENTS * 0.99 for i in s.injections), s.id
        if s.family == "past_unsent_gap":
            (gap,) = s.injections
            assert expected_affected(s.shop_config(), gap, gap.onset, gap.end) >= EVIDENCE_EVENTS


def test_a_partial_loss_needs_more_hours_of_evidence_than_a_total_one() -> None:
    """A total loss gives an ideal test one nat per expected event; a 58 % loss about 0.37 per lost
    event ((1-m)ln(1-m)+m over m), a 30 % loss about 0.17: the target grows as the loss shrinks."""
    from evals.evaluate.families import evidence_rate, expected_affected

    s = next(s for s in build_library() if s.family == "server_down_partial")
    config, (base,) = s.shop_config(), s.injections
    hour = base.onset.replace(minute=0) + timedelta(hours=2)
    for magnitude, per_lost in ((1.0, 1.0), (0.58, 0.373), (0.3, 0.168)):
        injection = base.model_copy(update={"magnitude": magnitude})
        lost = expected_affected(config, injection, hour, hour + timedelta(hours=1))
        assert evidence_rate(config, injection, hour) == pytest.approx(per_lost * lost, rel=0.01)


def test_preexisting_failures_start_days_before_the_first_audit_and_past_gaps_hours_before() -> None:
    for s in build_library():
        if s.family == "preexisting_failure":
            gap = s.first_audit_at - min(i.onset for i in s.injections)
            assert 1 <= gap.days <= 7
        if s.family == "past_unsent_gap":
            (injection,) = s.injections
            hours = (s.first_audit_at - injection.onset).total_seconds() / 3600
            assert 2 <= hours <= 6 and injection.end <= s.first_audit_at


def test_healthy_world_runs_on_real_demand_inside_nab_windows_and_through_demand_events() -> None:
    healthy = [s for s in build_library() if s.expect.healthy]
    real = [s for s in healthy if s.family == "healthy_real_demand"]
    inside = 0
    for s in real:
        config = s.shop_config()
        assert config.demand_series and config.full_user_data
        local = s.audit_at.astimezone(ZoneInfo(s.timezone)).replace(tzinfo=None)
        series_time = local - config.demand_shift_weeks * (datetime(2000, 1, 8) - datetime(2000, 1, 1))
        inside += any(a <= series_time <= b for a, b in anomaly_windows(config.demand_series))
    assert inside >= 8
    scales = sorted(float(s.shop["scale"]) for s in real)
    assert scales[0] <= scale_for_events_per_day(SIZES_PER_DAY[0]) and scales[-1] >= scale_for_events_per_day(50000)
    kinds = {e["kind"] for s in healthy for e in s.shop.get("demand_events", [])}
    assert kinds == {"storm", "outage", "viral", "holiday", "sale", "bots"}
