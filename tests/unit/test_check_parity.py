"""Parity: browser vs server, orders vs server Purchases, event_id coverage and repeats."""

from __future__ import annotations

from tests.checkdata import ShopData
from tools.checks.parity import check_parity
from tools.checks.types import Finding
from tools.timeutil import HOUR


def _codes(findings: list[Finding], loud_only: bool = True) -> set[tuple[str, str | None]]:
    return {(f.code, f.event_name) for f in findings if not loud_only or f.severity != "info"}


def test_healthy_shop_without_server_pageview_is_quiet() -> None:
    for seed in (1, 2, 3):
        assert _codes(check_parity(ShopData(seed=seed).inputs())) == set()


def test_server_below_browser_against_the_usual_ratio() -> None:
    shop = ShopData()
    shop.inject_server_down(events=["ViewContent"])
    finding = next(f for f in check_parity(shop.inputs()) if f.code == "parity.server_below_browser")
    assert finding.event_name == "ViewContent" and finding.severity == "critical"
    assert finding.metrics["observed"] == 0 and float(finding.metrics["baseline"]) > 50  # type: ignore[arg-type]
    # the injection starts 3 h before the end
    assert finding.metrics["witness"] == "cross" and finding.metrics["onset"] == "2026-11-24T12:00:00Z"
    assert float(finding.metrics["ratio_of_baseline"]) == 0.0  # type: ignore[arg-type]


def test_browser_below_server() -> None:
    shop = ShopData()
    shop.inject_browser_down()
    codes = _codes(check_parity(shop.inputs()))
    assert ("parity.browser_below_server", "ViewContent") in codes
    assert ("parity.browser_below_server", "PageView") not in codes  # no server side to compare with


def test_sales_peak_on_both_sides_keeps_parity() -> None:
    shop = ShopData()
    shop.inject_sales_spike()
    assert _codes(check_parity(shop.inputs())) == set()


def test_orders_unmatched() -> None:
    shop = ShopData()
    for hour in shop.since(shop.window_end - 12 * HOUR):  # pooled hours of a small series
        shop.orders[hour]["matched"] = 0
    finding = next(f for f in check_parity(shop.inputs()) if f.code == "parity.orders_unmatched")
    assert finding.metrics["matched"] == 0 and int(finding.metrics["orders"]) >= 5  # type: ignore[arg-type]
    # The evidence counts orders: of all of them, about as many expected as there were (all matched).
    orders = int(finding.metrics["orders"])  # type: ignore[arg-type]
    assert f"0 of {orders} orders, about {orders} expected from its witnesses (0% of the usual share" \
        in finding.evidence[0]
    assert finding.metrics["ratio_of_baseline"] == 0.0
    usual, hours = float(finding.metrics["baseline"]), float(finding.metrics["hours"])  # type: ignore[arg-type]
    assert abs(float(finding.metrics["expected_per_hour"]) - usual * orders / hours) < 0.01  # type: ignore[arg-type]


def test_dedup_key_missing_from_ledger_and_meta_feedback() -> None:
    shop = ShopData()
    shop.inject_dedup_broken(onset=shop.window_end - 12 * HOUR, events=["Purchase"])
    finding = next(f for f in check_parity(shop.inputs()) if f.code == "parity.dedup_key_missing")
    assert finding.event_name == "Purchase" and finding.severity == "critical"
    assert finding.metrics["observed"] == 0 and finding.metrics["meta_server_pct"] == 3.0
    assert any("Meta dedupe feedback" in line for line in finding.evidence)


def test_event_ids_that_were_never_sent_are_only_info() -> None:
    shop = ShopData()
    shop.inject_dedup_broken(onset=shop.hours[0], events=["ViewContent"])
    shop.quality_now["ViewContent"]["dedupe_server"] = 98.0
    findings = [f for f in check_parity(shop.inputs()) if f.code == "parity.dedup_key_missing"]
    assert [f.severity for f in findings] == ["info"]


def test_event_ids_lost_days_ago_are_still_a_loss() -> None:
    """Lost three days ago: the last 7 days average under the floor, as for a shop that never sent
    ids, but the change point and the level before it say it is a loss (not a standing gap)."""
    shop = ShopData()
    shop.inject_dedup_broken(onset=shop.window_end - 3 * 24 * HOUR, events=["ViewContent"])
    shop.quality_now["ViewContent"]["dedupe_server"] = 98.0
    (finding,) = [f for f in check_parity(shop.inputs()) if f.code == "parity.dedup_key_missing"]
    assert finding.severity == "critical" and float(finding.metrics["baseline"]) > 0.9  # type: ignore[arg-type]
    assert any("fell from" in line for line in finding.evidence)


def test_meta_unreachable_skips_browser_server_comparison() -> None:
    shop = ShopData()
    shop.inject_browser_down()
    shop.inject_meta_unreachable()
    assert _codes(check_parity(shop.inputs()), loud_only=False) == set()


def _browser_event_id_pct(inputs, pct: float):
    from dataclasses import replace

    from tools.checks.types import DedupeKeyFeedback

    quality = replace(inputs.quality, events=tuple(
        replace(q, dedupe_key_feedback=(DedupeKeyFeedback("event_id", pct, 98.0, pct),))
        for q in inputs.quality.events))
    return replace(inputs, quality=quality)


def test_browser_losing_event_ids_is_dedup_broken() -> None:
    """Only Meta sees the pixel's eventID: its dedupe feedback falling on the browser side while the
    server keeps its ids is the browser half of broken deduplication."""
    inputs = _browser_event_id_pct(ShopData().inputs(), 40.0)
    findings = [f for f in check_parity(inputs) if f.code == "parity.dedup_key_missing"]
    assert findings and all(f.severity == "critical" and f.metrics["source"] == "browser" for f in findings)
    from tools.diagnosis.rules import diagnose
    assert {i.root_cause for i in diagnose(findings, inputs)} == {"dedup_broken"}


def test_browser_event_ids_at_the_usual_level_are_quiet() -> None:
    inputs = _browser_event_id_pct(ShopData().inputs(), 97.0)
    assert not [f for f in check_parity(inputs) if f.code == "parity.dedup_key_missing"]


def test_a_browser_event_id_share_falling_within_the_day_is_news() -> None:
    from dataclasses import replace

    from tools.timeutil import HOUR

    inputs = ShopData().inputs()
    earlier = _browser_event_id_pct(inputs, 100.0).quality
    earlier = replace(earlier, fetched_at=earlier.fetched_at - 5 * HOUR)
    falling = replace(_browser_event_id_pct(inputs, 94.0), quality_history=(*inputs.quality_history, earlier))
    findings = [f for f in check_parity(falling) if f.code == "parity.dedup_key_missing"]
    assert findings and findings[0].severity == "warning"


def test_a_slow_share_falling_beyond_chance_is_news_and_noise_is_not() -> None:
    """Meta's share may cover seven days, where a total loss moves it about 0.6 points an hour: a
    3-point fall in 5 hours on a busy shop is far beyond chance; 1 point is not news."""
    from dataclasses import replace

    from tools.timeutil import HOUR

    inputs = ShopData().inputs()
    earlier = _browser_event_id_pct(inputs, 99.0).quality
    earlier = replace(earlier, fetched_at=earlier.fetched_at - 5 * HOUR)

    def at(pct: float) -> list:
        now = replace(_browser_event_id_pct(inputs, pct), quality_history=(*inputs.quality_history, earlier))
        return [f for f in check_parity(now) if f.code == "parity.dedup_key_missing"]

    assert at(96.0) and at(96.0)[0].metrics["source"] == "browser"
    assert not at(98.0)
