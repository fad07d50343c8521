"""Baselines: hour-of-week aware, noise-aware, graceful with short histories."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.checkdata import ShopData, daily_shape
from tools.checks.baseline import HourlyBaseline, judged_span
from tools.checks.series import ledger_counts
from tools.timeutil import DAY, HOUR, hours_between


def _baseline(shop: ShopData, name: str = "ViewContent") -> HourlyBaseline:
    series = ledger_counts(shop.inputs())[name]
    return HourlyBaseline(series, known_from=shop.hours[0], until=shop.window_start, weeks=4)


def test_expectation_follows_the_hour_of_the_day_and_the_weekend() -> None:
    baseline = _baseline(ShopData())
    afternoon = baseline.expect(datetime(2026, 11, 24, 14, tzinfo=UTC))
    night = baseline.expect(datetime(2026, 11, 24, 4, tzinfo=UTC))
    saturday = baseline.expect(datetime(2026, 11, 21, 14, tzinfo=UTC))
    assert afternoon and night and saturday
    # ViewContent peaks at 150/h on weekdays; 4 a.m. is ~12 % of that, weekends 70 %.
    assert 120 < afternoon.expected < 170
    assert night.expected < 0.2 * afternoon.expected
    assert 0.55 < saturday.expected / afternoon.expected < 0.85


def test_z_score_is_noise_aware() -> None:
    baseline = _baseline(ShopData())
    hour = datetime(2026, 11, 24, 14, tzinfo=UTC)
    expectation = baseline.expect(hour)
    assert expectation is not None
    assert abs(expectation.z(expectation.expected * 1.1)) < 2  # ordinary noise
    assert expectation.z(0) < -8  # an afternoon with nothing is far out
    # A small series needs a bigger relative deviation to count.
    small = _baseline(ShopData(), "Purchase").expect(hour)
    assert small is not None
    assert abs(small.z(small.expected * 0.5)) < abs(expectation.z(expectation.expected * 0.5))


def test_short_history_uses_recent_days() -> None:
    shop = ShopData(days_of_data=3)
    baseline = _baseline(shop)
    expectation = baseline.expect(datetime(2026, 11, 24, 14, tzinfo=UTC))
    assert expectation is not None and expectation.references == 2  # the two complete earlier days
    assert 100 < expectation.expected < 190
    # Before any data there is nothing to compare with.
    assert baseline.expect(shop.hours[0]) is None


def test_low_volume_series_is_pooled_or_left_alone() -> None:
    shop = ShopData()
    lead = HourlyBaseline(ledger_counts(shop.inputs())["Lead"], known_from=shop.hours[0],
                          until=shop.window_start)
    window = [shop.window_start]
    # 0.4 events/h at peak: even 12 pooled hours stay below 5 expected events -> not judged.
    assert judged_span(lead, window, min_expected=5, wanted_expected=20, max_hours=12,
                       earliest=shop.hours[0]) is None
    judged = judged_span(lead, window, min_expected=0.5, wanted_expected=1.0, max_hours=12,
                         earliest=shop.hours[0])
    assert judged is not None
    hours, expectation = judged
    assert 1 < len(hours) < 12 and hours[-1] == shop.window_start and expectation.expected >= 1.0


def test_weekday_levels_scale_recent_days() -> None:
    # A pure weekly pattern with no noise: Saturday 14:00 expected from weekdays must be scaled down.
    end = datetime(2026, 11, 21, 15, tzinfo=UTC)  # Saturday
    start = end - 28 * DAY
    series = {h: 100 * daily_shape(h) for h in hours_between(start, end)}
    baseline = HourlyBaseline(series, known_from=start, until=end - HOUR)
    expectation = baseline.expect(end - HOUR)
    assert expectation is not None
    assert abs(expectation.expected - series[end - HOUR]) < 1.0
