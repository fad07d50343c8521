"""The detection-speed benchmark's pieces: the gradual ramp and the day-over-day baseline rules."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from evals.perf.detection_speed import ONSET, case_scenario, dod_per_event_alert, dod_total_alert, ramp
from tools.synth.inject import Injection
from tools.timeutil import DAY, HOUR


def test_ramp_loses_a_rising_share_each_hour_then_everything() -> None:
    steps = [Injection.model_validate(step) for step in ramp(ONSET, 6)]
    assert [s.onset for s in steps] == [ONSET + k * HOUR for k in range(7)]
    shares = [s.share() for s in steps]
    assert shares == sorted(shares) and shares[0] < 0.2 and shares[-1] == 1.0 and steps[-1].end is None
    scenario = case_scenario("fade", ramp(ONSET, 6), days=15, horizon=8)
    assert scenario.audit_at == ONSET + 8 * HOUR and scenario.start <= ONSET - 14 * DAY


def _counts(rows: dict[tuple[str, datetime], int]) -> Counter[tuple[str, datetime]]:
    return Counter(rows)


def test_day_over_day_rules_alert_on_a_drop_of_more_than_half() -> None:
    hour = ONSET
    counts = _counts({("Purchase", hour - DAY): 40, ("Purchase", hour): 19, ("PageView", hour - DAY): 400,
                      ("PageView", hour): 390})
    assert dod_per_event_alert(counts, hour)  # Purchase 40 -> 19
    assert not dod_total_alert(counts, hour)  # 440 -> 409 overall
    small = _counts({("Purchase", hour - DAY): 3, ("Purchase", hour): 0})
    assert not dod_per_event_alert(small, hour)  # below the per-event minimum volume
    assert dod_total_alert(small, hour)
