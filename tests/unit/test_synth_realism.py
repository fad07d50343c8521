"""The realistic world of the synthetic shop: real demand series, demand events on every side,
senders flushing off the hour, every hashed key, ad-block drift."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from tools.synth.realdemand import SERIES, anomaly_windows, hourly_series, multiplier, shift_weeks_for
from tools.synth.shop import DemandEvent, ShopConfig, ad_blocker_share, traffic_factor
from tools.synth.traffic import ShopTraffic, simulate_traffic
from tools.timeutil import UTC

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def test_real_series_are_hourly_multipliers_with_mean_one_and_weekdays_line_up() -> None:
    for name in SERIES:
        first, values = hourly_series(name)
        assert statistics.fmean(values) == pytest.approx(1.0)
        assert len(values) > 7 * 24 * 7 and max(values) > 5  # eight weeks, with real news spikes
        assert anomaly_windows(name)
    weeks = shift_weeks_for("Twitter_volume_GOOG", datetime(2026, 11, 12, 20), datetime(2015, 3, 20, 20))
    # The same local hour of the same weekday in the series.
    series_time = datetime(2026, 11, 12, 20) - timedelta(weeks=weeks)
    assert series_time.weekday() == datetime(2026, 11, 12).weekday() and series_time.hour == 20
    first, values = hourly_series("Twitter_volume_GOOG")
    index = int((series_time - first).total_seconds() // 3600)
    assert multiplier("Twitter_volume_GOOG", datetime(2026, 11, 12, 20), weeks) == values[index]


def test_demand_events_move_browser_server_and_orders_together_and_an_outage_stops_everything() -> None:
    storm = DemandEvent(kind="storm", start=START + timedelta(hours=30), end=START + timedelta(hours=36),
                        multiplier=0.4)
    outage = DemandEvent(kind="outage", start=START + timedelta(hours=42), end=START + timedelta(hours=44))
    base = ShopConfig(scale=3.0)
    config = base.model_copy(update={"demand_events": [storm, outage]})
    calm = simulate_traffic(base, start=START, end=START + timedelta(days=2), seed=1)
    hit = simulate_traffic(config, start=START, end=START + timedelta(days=2), seed=1)

    def count(traffic: ShopTraffic, lo: int, hi: int) -> tuple[int, int, int]:
        lo, hi = START + timedelta(hours=lo), START + timedelta(hours=hi)
        return (sum(lo <= r.true_time < hi for r in traffic.server), sum(lo <= h.time < hi for h in traffic.browser),
                sum(lo <= o.created_at < hi for o in traffic.orders))

    for side_calm, side_storm in zip(count(calm, 30, 36), count(hit, 30, 36), strict=True):
        assert 0.25 < side_storm / side_calm < 0.55
    assert count(hit, 42, 44) == (0, 0, 0)
    assert traffic_factor(config, START + timedelta(hours=43)) == 0


def test_batch_senders_flush_at_arbitrary_minutes_with_a_late_start() -> None:
    config = ShopConfig(batch_interval_minutes=15, batch_offset_minutes=7, batch_jitter_seconds=120)
    traffic = simulate_traffic(config, start=START, end=START + timedelta(hours=6), seed=2)
    minutes = Counter(r.received_at.minute % 15 for r in traffic.server)
    assert set(minutes) <= {7, 8, 9} and minutes[7] < len(traffic.server)
    assert all(r.received_at >= r.true_time for r in traffic.server)


def test_known_customers_carry_every_hashed_key_and_one_country_repeats() -> None:
    config = ShopConfig(full_user_data=True, country="fr")
    traffic = simulate_traffic(config, start=START, end=START + timedelta(hours=12), seed=3)
    keys = Counter(k for r in traffic.server for k in r.event["user_data"])
    assert {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"} <= set(keys)
    countries = {r.event["user_data"]["country"][0] for r in traffic.server if "country" in r.event["user_data"]}
    assert len(countries) == 1 and all(len(value) == 64 for value in countries)
    ips = [r.event["user_data"]["client_ip_address"] for r in traffic.server]
    assert any(":" in ip for ip in ips) and any("." in ip for ip in ips)


def test_ad_block_share_drifts_slowly() -> None:
    config = ShopConfig(ad_blocker_share=0.2, ad_blocker_drift=0.05, ad_blocker_drift_days=20)
    shares = [ad_blocker_share(config, START + timedelta(hours=h)) for h in range(0, 20 * 24, 6)]
    assert 0.14 < min(shares) < 0.17 and 0.23 < max(shares) < 0.26
    assert max(abs(a - b) for a, b in pairwise(shares)) < 0.01


def test_blocked_share_cycles_through_the_day_in_local_time() -> None:
    """Desktops (and their blockers) in office hours, phones at night: highest at 14:00 local."""
    config = ShopConfig(ad_blocker_share=0.2, ad_blocker_daily=0.06, timezone="Asia/Tokyo")
    by_local_hour = {(START + timedelta(hours=h)).astimezone(config.tz()).hour:
                     ad_blocker_share(config, START + timedelta(hours=h)) for h in range(24)}
    assert max(by_local_hour, key=lambda h: by_local_hour[h]) in (13, 14)
    assert min(by_local_hour, key=lambda h: by_local_hour[h]) in (1, 2)
    assert 0.255 < by_local_hour[14] < 0.261 and 0.139 < by_local_hour[2] < 0.145


def test_the_blocked_share_of_each_hour_spreads_the_browser_share() -> None:
    """Hour to hour, who visits moves the share the browser sees: its ViewContents against the server's
    vary more (Pearson's statistic over hours) with a concentration than without. Both channels count
    the same visitors, so even the steady shop stays below binomial noise on the pair (the checks'
    binomial model is the conservative side)."""
    def dispersion(concentration: float | None) -> float:
        config = ShopConfig(ad_blocker_share=0.25, scale=8, ad_blocker_concentration=concentration)
        traffic = simulate_traffic(config, start=START, end=START + timedelta(hours=24), seed=5)
        browser = Counter(hit.time.replace(minute=0, second=0) for hit in traffic.browser
                          if hit.event_name == "ViewContent")
        server = Counter(r.true_time.replace(minute=0, second=0) for r in traffic.server
                         if r.event["event_name"] == "ViewContent")
        share = sum(browser.values()) / (sum(browser.values()) + sum(server.values()))
        stat = [(browser[h] - share * (browser[h] + server[h])) ** 2 / ((browser[h] + server[h]) * share * (1 - share))
                for h in server]
        return sum(stat) / (len(stat) - 1)

    steady = dispersion(None)
    assert steady < 0.3
    assert dispersion(50) > 3 * steady
