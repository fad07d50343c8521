"""Volume: drops, zeros and spikes against the hour-of-week baseline, and what must stay quiet."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.checkdata import ShopData
from tools.checks.parity import check_parity
from tools.checks.types import Finding
from tools.checks.volume import check_volume


def _loud(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity != "info"]


def _one(findings: list[Finding], code: str, event: str) -> Finding:
    matches = [f for f in findings if f.code == code and f.event_name == event]
    assert len(matches) == 1, [(f.code, f.event_name) for f in findings]
    return matches[0]


def test_one_channel_drop_is_left_to_its_witnesses() -> None:
    """A browser zero next to a steady server side is judged by the witness tests (parity), not by
    volume alone: the volume check raises nothing loud for it."""
    shop = ShopData()
    shop.inject_browser_down(events=["ViewContent"])
    inputs = shop.inputs()
    assert _loud(check_volume(inputs)) == []
    finding = _one(check_parity(inputs), "parity.browser_below_server", "ViewContent")
    assert finding.severity == "critical" and finding.metrics["observed"] == 0
    assert finding.metrics["onset"] == "2026-11-24T12:00:00Z"  # the injection starts 3 h before the end


def test_partial_drop_is_a_warning() -> None:
    shop = ShopData()
    for hour in shop.since(None):
        shop.browser[(hour, "ViewContent")] = round(shop.browser[(hour, "ViewContent")] * 0.25)
    finding = _one(check_parity(shop.inputs()), "parity.browser_below_server", "ViewContent")
    assert finding.severity == "warning"
    assert float(finding.metrics["ratio_of_baseline"]) < 0.5  # type: ignore[arg-type]


def test_server_only_spike_is_a_warning_and_sales_peak_is_info() -> None:
    shop = ShopData()
    shop.inject_duplicates(events=["ViewContent"])
    spike = _one(check_volume(shop.inputs()), "volume.spike", "ViewContent")
    assert spike.severity == "warning" and spike.metrics["source"] == "server"

    sale = ShopData()
    sale.inject_sales_spike(factor=4)
    findings = check_volume(sale.inputs())
    assert any(f.code == "volume.spike" for f in findings)
    assert _loud(findings) == []


def test_new_event_name_is_reported_as_info() -> None:
    shop = ShopData()
    shop.inject_rename("AddToCart", "add_to_cart")
    findings = check_volume(shop.inputs())
    new = _one(findings, "volume.new_event", "add_to_cart")
    assert new.severity == "info" and int(new.metrics["observed"]) > 10  # type: ignore[arg-type]
    assert _one(findings, "volume.zero", "AddToCart").metrics["source"] == "both"


@pytest.mark.parametrize(
    "window_end",
    [
        datetime(2026, 11, 24, 4, tzinfo=UTC),  # quiet night hour
        datetime(2026, 11, 22, 15, tzinfo=UTC),  # Sunday afternoon (weekend dip)
        datetime(2026, 11, 21, 4, tzinfo=UTC),  # Saturday night
        datetime(2026, 11, 24, 15, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_traffic_is_quiet(window_end: datetime, seed: int) -> None:
    assert _loud(check_volume(ShopData(seed=seed, window_end=window_end).inputs())) == []


def test_low_volume_event_with_zero_hours_is_quiet() -> None:
    shop = ShopData()
    for hour in shop.since(None):  # Lead (0.4/h) sees three empty hours: normal for it
        shop._set_server(hour, "Lead", 0)
        shop.browser[(hour, "Lead")] = 0
    assert [f for f in check_volume(shop.inputs()) if f.event_name == "Lead"] == []


@pytest.mark.parametrize("days", [1.5, 3])
def test_short_history_is_quiet_but_still_sees_an_outage(days: float) -> None:
    assert _loud(check_volume(ShopData(days_of_data=days).inputs())) == []
    broken = ShopData(days_of_data=days)
    broken.inject_browser_down(events=["ViewContent"])
    finding = _one(check_parity(broken.inputs()), "parity.browser_below_server", "ViewContent")
    assert finding.severity == "critical"


def test_no_history_at_all_judges_nothing() -> None:
    shop = ShopData(days_of_data=0.5)
    shop.inject_browser_down()
    assert check_volume(shop.inputs()) == []


def test_meta_unreachable_falls_back_to_ledger_counts() -> None:
    shop = ShopData()
    shop.inject_meta_unreachable()
    assert _loud(check_volume(shop.inputs())) == []
    down = ShopData()
    down.inject_server_down(events=["ViewContent"])
    down.inject_meta_unreachable()
    finding = _one(check_volume(down.inputs()), "volume.zero", "ViewContent")
    assert finding.metrics["origin"] == "ledger" and finding.metrics["source"] == "server"


def _event_falls_on_both_channels(shop: ShopData, name: str, keep: float) -> None:
    """``name`` keeps ``keep`` of its events on the browser and the server alike for four hours."""
    for hour in shop.hours[-4:]:
        shop.browser[(hour, name)] = round(shop.browser[(hour, name)] * keep)
        shop._set_server(hour, name, round(shop.ledger[(hour, name)]["events"] * keep))


def test_an_event_that_falls_on_both_channels_is_its_demand_not_a_tracking_incident() -> None:
    """InitiateCheckout at a fifth on the browser and the server alike (conversions collapsing on a
    news spike): against its pool it fell, against the other channel it did not. Info, no incident."""
    from tools.checks.registry import run_checks
    from tools.diagnosis.rules import diagnose

    shop = ShopData()
    _event_falls_on_both_channels(shop, "InitiateCheckout", 0.2)
    inputs = shop.inputs()
    findings = run_checks(inputs)
    drops = [f for f in findings if f.code == "volume.drop" and f.event_name == "InitiateCheckout"]
    assert drops and all(f.severity == "info" and f.metrics["both_channels"] == 1 for f in drops)
    assert diagnose(findings, inputs) == []


def test_an_event_gone_from_both_channels_is_still_a_drop() -> None:
    """Gone from both (a tag removed from the page) while the rest carries on is not demand."""
    shop = ShopData()
    _event_falls_on_both_channels(shop, "InitiateCheckout", 0.0)
    zeros = [f for f in check_volume(shop.inputs()) if f.code == "volume.zero" and f.event_name == "InitiateCheckout"]
    assert zeros and all(f.severity != "info" for f in zeros)
