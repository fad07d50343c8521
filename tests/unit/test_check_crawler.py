"""Crawler surplus: server page views no browser caused are set apart, not read as a tracking failure."""

from __future__ import annotations

from tests.checkdata import ShopData
from tools.checks.crawler import set_apart_crawler
from tools.checks.registry import run_checks
from tools.diagnosis.rules import diagnose
from tools.timeutil import HOUR


def _crawl(shop: ShopData, *, hours: int = 3, factor: float = 3.0, name: str = "ViewContent") -> int:
    """A crawler over the last ``hours``: ``factor`` times the usual server events of ``name`` more,
    each without _fbp or any other key; the browser sees none of it. Returns the events added."""
    added = 0
    for hour in shop.hours[-hours:]:
        row = shop.ledger[(hour, name)]
        extra = round(row["events"] * factor)
        row["events"] += extra
        row["with_event_id"] += extra
        added += extra
    return added


def _serious(shop: ShopData) -> list[tuple[str, str | None]]:
    inputs = set_apart_crawler(shop.inputs())
    return sorted((f.code, f.event_name) for f in run_checks(inputs) if f.severity != "info")


def test_a_crawler_is_set_apart_and_reported_not_read_as_a_failure() -> None:
    shop = ShopData()
    added = _crawl(shop)
    raw = shop.inputs()
    # Left in, the surplus reads as the Pixel and the match keys failing on ViewContent.
    assert {code for code, _ in ((f.code, f.event_name) for f in run_checks(raw) if f.severity != "info")} \
        & {"parity.browser_below_server", "emq.key_coverage_drop"}
    assert _serious(shop) == []
    cleaned = set_apart_crawler(raw)
    (surplus,) = cleaned.crawler_surplus
    assert surplus.event_name == "ViewContent" and surplus.start == shop.hours[-3]
    assert 0.8 * added <= surplus.removed <= 1.2 * added
    finding = next(f for f in run_checks(cleaned) if f.code == "volume.crawler_surplus")
    assert finding.severity == "info" and finding.event_name == "ViewContent"
    assert diagnose([f for f in run_checks(cleaned) if f.severity != "info"], cleaned) == []


def test_a_lost_cookie_is_not_a_crawler() -> None:
    """The sender stops forwarding _fbp: the events with it fall against the browser too, so nothing
    is set apart and the key's loss is reported."""
    shop = ShopData()
    shop.inject_keys_lost("fbp", onset=shop.window_end - 3 * HOUR, events=["ViewContent"], emq_fall=0.0)
    inputs = set_apart_crawler(shop.inputs())
    assert inputs.crawler_surplus == ()
    assert ("emq.key_coverage_drop", "ViewContent") in _serious(shop)


def test_a_lost_pixel_is_not_a_crawler() -> None:
    shop = ShopData()
    shop.inject_browser_down(onset=shop.window_end - 3 * HOUR, events=["ViewContent"])
    assert set_apart_crawler(shop.inputs()).crawler_surplus == ()
    assert ("parity.browser_below_server", "ViewContent") in _serious(shop)


def test_without_meta_nothing_is_set_apart() -> None:
    """The browser's count is what tells a crawler from a lost cookie: without Meta, no guess."""
    shop = ShopData()
    _crawl(shop)
    shop.inject_meta_unreachable()
    inputs = shop.inputs()
    assert set_apart_crawler(inputs) is inputs


def test_a_healthy_shop_has_no_crawler() -> None:
    for seed in range(1, 6):
        inputs = ShopData(seed=seed).inputs()
        assert set_apart_crawler(inputs) is inputs
