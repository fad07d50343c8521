"""Latency: lag p95, too-old and future event times, data freshness."""

from __future__ import annotations

from bisect import bisect_left

import pytest

from tests.checkdata import ShopData
from tools.checks.latency import check_latency, lag_percentile
from tools.checks.registry import run_checks
from tools.checks.types import LAG_BUCKET_EDGES
from tools.diagnosis.rules import diagnose


def test_lag_percentile_interpolates_inside_buckets() -> None:
    buckets = [0] * (len(LAG_BUCKET_EDGES) + 1)
    assert lag_percentile(buckets, 0.95) is None
    buckets[0] = 100  # all within a minute
    assert lag_percentile(buckets, 0.95) == pytest.approx(57.0)
    buckets[0], buckets[5] = 50, 50  # half 3-6 h late
    assert 3 * 3600 < (lag_percentile(buckets, 0.95) or 0) <= 6 * 3600
    open_bucket = [0] * len(buckets)
    open_bucket[-1] = 10  # older than 7 days: reported as the last edge (a lower bound)
    assert lag_percentile(open_bucket, 0.95) == LAG_BUCKET_EDGES[-1]


def test_healthy_is_quiet() -> None:
    assert check_latency(ShopData().inputs()) == []


def test_late_delivery_raises_p95_and_freshness() -> None:
    shop = ShopData()
    shop.inject_late_delivery()
    findings = check_latency(shop.inputs())
    p95 = next(f for f in findings if f.code == "latency.p95_high" and f.event_name == "ViewContent")
    assert float(p95.metrics["observed"]) > 3 * 3600 and p95.metrics["threshold"] == 3600  # type: ignore[arg-type]
    fresh = [f for f in findings if f.code == "latency.freshness_degraded"]
    assert fresh and fresh[0].metrics["observed"] == "hourly"


def test_freshness_that_was_never_real_time_is_quiet() -> None:
    shop = ShopData()
    for _, snapshot in shop.quality_history:
        for quality in snapshot.values():
            quality["freshness"] = "daily"
    for quality in shop.quality_now.values():
        quality["freshness"] = "daily"
    assert check_latency(shop.inputs()) == []


def test_future_time_and_too_old() -> None:
    shop = ShopData()
    shop.inject_clock_skew()
    row = shop.ledger[(shop.window_start, "AddToCart")]
    row["too_old"] = 4
    findings = {(f.code, f.event_name): f for f in check_latency(shop.inputs())}
    assert findings[("latency.future_time", "ViewContent")].metrics["observed"] == 1.0
    assert findings[("latency.too_old", "AddToCart")].metrics["observed"] == 4


def test_a_few_skewed_device_clocks_are_quiet() -> None:
    shop = ShopData()
    shop.ledger[(shop.window_start, "ViewContent")]["future_time"] = 2
    assert check_latency(shop.inputs()) == []


# -- arrivals: a wrong clock vs a backlog, from the first hour --------------------------------------
def _arrivals(shop: ShopData, window_offsets: dict[int, int]) -> tuple:
    """A week of arrivals on time (offset within 5 minutes), then the window's given histogram."""
    from tools.checks.types import OFFSET_EDGES, ArrivalHour

    zero = bisect_left(OFFSET_EDGES, 0)
    rows = []
    for hour in shop.hours[-7 * 24:-1]:
        offsets = [0] * (len(OFFSET_EDGES) + 1)
        offsets[zero] = 40
        rows.append(ArrivalHour(hour=hour, events=40, offsets=tuple(offsets)))
    offsets = [0] * (len(OFFSET_EDGES) + 1)
    for seconds, count in window_offsets.items():
        offsets[bisect_left(OFFSET_EDGES, seconds)] += count
    rows.append(ArrivalHour(hour=shop.window_start, events=sum(offsets), offsets=tuple(offsets)))
    return tuple(rows)


@pytest.mark.parametrize(("seconds", "direction"), [(3 * 3600 + 5, "behind"), (-5 * 3600, "ahead")])
def test_a_constant_offset_is_a_clock_in_its_first_hour(seconds: int, direction: str) -> None:
    shop = ShopData()
    finding = next(f for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {seconds: 50})))
                   if f.code == "latency.clock_offset")
    assert finding.metrics["direction"] == direction and finding.severity == "critical"


def test_a_clock_that_jumped_shows_in_a_thin_first_hour() -> None:
    """Five arrivals, all 7 hours ahead, from a sender whose week was on time: chance cannot do that
    (binomial tail 1e-10), so a small shop at night does not wait for a busy hour. Two moved arrivals
    of two are too few to say."""
    shop = ShopData()
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {-7 * 3600: 5})))}
    assert "latency.clock_offset" in codes
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {-7 * 3600: 2})))}
    assert "latency.clock_offset" not in codes


def test_a_clock_that_jumped_mid_hour_shows_in_that_hour_and_a_minority_of_stragglers_does_not() -> None:
    """The jump at :10 leaves the hour's first arrivals on time: 24 moved of 31 is the clock. Ten moved
    of 40 (a retried batch) is a minority: the lag checks' business, not a clock."""
    shop = ShopData()
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {-7 * 3600: 24, 2: 7})))}
    assert "latency.clock_offset" in codes
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {-7 * 3600: 10, 2: 30})))}
    assert not codes & {"latency.backlog_arrivals", "latency.clock_offset"}


def test_a_spread_of_late_arrivals_is_a_backlog_not_a_clock() -> None:
    shop = ShopData()
    spread = {1800: 12, 2 * 3600: 12, 5 * 3600: 12, 10 * 3600: 12, 20 * 3600: 12}
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, spread)))}
    assert "latency.backlog_arrivals" in codes and "latency.clock_offset" not in codes


def test_arrivals_on_time_say_nothing() -> None:
    shop = ShopData()
    codes = {f.code for f in check_latency(shop.inputs(arrival_hours=_arrivals(shop, {2: 45, 400: 3})))}
    assert not codes & {"latency.backlog_arrivals", "latency.clock_offset"}


def test_a_clock_behind_explains_the_empty_hour_at_meta() -> None:
    """Three hours behind: the audited hour looks empty on the server side at Meta, and the lag looks
    like late delivery; the arrivals say it is one clock."""
    shop = ShopData()
    shop.inject_server_down(onset=shop.window_start, events=None)
    inputs = shop.inputs(arrival_hours=_arrivals(shop, {3 * 3600 + 5: 60}))
    incidents = diagnose(run_checks(inputs), inputs)
    assert [i.root_cause for i in incidents] == ["clock_skew"]
