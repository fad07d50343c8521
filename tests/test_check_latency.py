"""Latency: lag p95, too-old and future event times, data freshness."""

from __future__ import annotations

import pytest

from tests.checkdata import ShopData
from tools.checks.latency import check_latency, lag_percentile
from tools.checks.types import LAG_BUCKET_EDGES


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
