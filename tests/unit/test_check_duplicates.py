"""Duplicates: a sender's repeated event_ids (Meta drops the copies: a warning, no incident) versus
the same order counted twice under different event_ids (``duplicate_events``), judged against the
pixel's own history."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.checkdata import EventProfile, ShopData
from tools.checks.duplicates import check_duplicates
from tools.checks.registry import run_checks
from tools.checks.types import Finding, IncidentSpan
from tools.diagnosis.rules import diagnose
from tools.timeutil import HOUR


def _loud(findings: list[Finding]) -> set[tuple[str, str | None]]:
    return {(f.code, f.event_name) for f in findings if f.severity != "info"}


@pytest.mark.parametrize("seed", [1, 2, 3, 7])
def test_healthy_and_a_sales_peak_are_quiet(seed: int) -> None:
    assert check_duplicates(ShopData(seed=seed).inputs()) == []
    shop = ShopData(seed=seed)
    shop.inject_sales_spike()
    assert check_duplicates(shop.inputs()) == []


def test_a_retry_storm_is_a_warning_with_its_share_and_no_double_count() -> None:
    shop = ShopData()
    shop.inject_retry_storm(factor=3)
    findings = check_duplicates(shop.inputs())
    assert _loud(findings) == {("duplicates.repeated_event_ids", "AddToCart"),
                               ("duplicates.repeated_event_ids", "Purchase")}
    finding = next(f for f in findings if f.event_name == "AddToCart")
    assert finding.severity == "warning" and 0.6 < float(finding.metrics["observed"]) < 0.7  # type: ignore[arg-type]
    # Meta's server counts held at the events without the copies: it dropped them, and says so.
    assert finding.metrics["meta_counted"] == 0
    assert "dropped the copies" in finding.summary and "nothing is counted twice" in finding.summary


def test_a_storm_is_still_judged_while_a_batch_sender_has_not_flushed_the_audited_hour() -> None:
    """The storm's hours are two hours back and the audited hour holds no AddToCart yet (a sender
    that flushes every few hours): the repeats are still news, not forgotten."""
    shop = ShopData()
    shop.inject_retry_storm(factor=3, onset=shop.window_start - 3 * HOUR, events=["AddToCart"])
    shop.ledger[(shop.window_start, "AddToCart")]["events"] = 0
    shop.ledger[(shop.window_start, "AddToCart")]["duplicate_event_ids"] = 0
    assert ("duplicates.repeated_event_ids", "AddToCart") in _loud(check_duplicates(shop.inputs()))


def test_a_retry_storm_alone_opens_no_duplicate_events_incident() -> None:
    shop = ShopData()
    shop.inject_retry_storm(factor=3)
    inputs = shop.inputs()
    findings = run_checks(inputs, only=["duplicates", "parity"])
    assert any(f.code == "duplicates.repeated_event_ids" for f in findings)
    assert [i.root_cause for i in diagnose(findings, inputs)] == []


def test_repeated_event_ids_that_meta_counted_are_duplicate_events() -> None:
    shop = ShopData()
    shop.inject_retry_storm(factor=3, onset=shop.window_end - 6 * HOUR)
    shop.meta_server_override.clear()  # Meta's server counts rose with the copies: it kept them
    inputs = shop.inputs()
    findings = run_checks(inputs)
    repeated = next(f for f in findings if f.code == "duplicates.repeated_event_ids" and f.event_name == "AddToCart")
    assert repeated.metrics["meta_counted"] == 1 and "Meta counted the copies" in repeated.summary
    incidents = diagnose(findings, inputs)
    assert [i.root_cause for i in incidents] == ["duplicate_events"]
    assert "AddToCart" in incidents[0].event_names


@pytest.mark.parametrize("by", ["double_order_ids", "double_purchase_keys", ""])
def test_the_same_orders_under_new_event_ids_are_double_counted(by: str) -> None:
    shop = ShopData()
    shop.inject_duplicates(events=["Purchase"], factor=2, by=by, onset=shop.window_end - 8 * HOUR)
    (finding,) = check_duplicates(shop.inputs())
    assert (finding.code, finding.event_name, finding.severity) == (
        "duplicates.double_counted", "Purchase", "critical")
    assert 0.4 < float(finding.metrics["observed"]) < 0.6  # type: ignore[arg-type]
    methods = str(finding.metrics["methods"]).split(",")
    assert "orders" in methods  # more Purchases than orders, whatever links the copies
    if by:
        assert {"double_order_ids": "order_id", "double_purchase_keys": "purchase_key"}[by] in methods


BUSY = {"Purchase": EventProfile(40, 0.8, 1.0, 8.0)}


def test_without_an_orders_feed_collisions_find_it_in_its_first_hour() -> None:
    shop = ShopData(profiles=BUSY)
    shop.inject_duplicates(events=["Purchase"], factor=2, by="double_purchase_keys",
                           onset=shop.window_start)  # its first audited hour
    inputs = replace(shop.inputs(), has_orders=False, order_hours=())
    (finding,) = check_duplicates(inputs)
    assert finding.code == "duplicates.double_counted" and finding.metrics["methods"] == "purchase_key"
    assert finding.severity == "critical" and finding.metrics["orders"] is None
    assert finding.metrics["hours"] == 1
    shop = ShopData(profiles=BUSY)
    shop.inject_duplicates(events=["Purchase"], factor=2, by="", onset=shop.window_start)
    assert check_duplicates(replace(shop.inputs(), has_orders=False, order_hours=())) == []  # no evidence


def test_a_couple_of_collisions_in_a_quiet_hour_are_not_enough() -> None:
    shop = ShopData()
    shop.ledger[(shop.window_start, "Purchase")]["double_purchase_keys"] = 1
    assert _loud(check_duplicates(replace(shop.inputs(), has_orders=False))) == set()


def test_double_count_is_a_duplicate_events_incident() -> None:
    shop = ShopData()
    shop.inject_duplicates(events=["Purchase"], factor=2)
    inputs = shop.inputs()
    incidents = diagnose(run_checks(inputs), inputs)
    assert [i.root_cause for i in incidents] == ["duplicate_events"]
    claimed = set(incidents[0].finding_ids)
    assert any(f.code == "duplicates.double_counted" and f.id in claimed for f in run_checks(inputs))


def test_a_standing_share_of_doubles_is_info() -> None:
    shop = ShopData()
    for hour in shop.hours:  # a steady ~8 % of Purchases collide (a shop whose checkout double-posts)
        row = shop.ledger[(hour, "Purchase")]
        row["double_purchase_keys"] = round(0.08 * row["events"])
    (finding,) = check_duplicates(replace(shop.inputs(), has_orders=False))
    assert finding.severity == "info" and finding.metrics["standing"] == 1


SMALL = {"Purchase": EventProfile(2, 0.8, 1.0, 8.0)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_small_shop_does_not_flap_on_a_stray_collision_or_repeat(seed: int) -> None:
    shop = ShopData(seed=seed, profiles=SMALL)
    for index, hour in enumerate(shop.hours):
        row = shop.ledger[(hour, "Purchase")]
        if row["events"] and index % 31 == 0:
            row["double_purchase_keys"] = 1
        if row["events"] and index % 17 == 0:
            row["duplicate_event_ids"] = 1
    inputs = shop.inputs()
    for back in range(72):
        end = shop.window_end - back * HOUR
        assert _loud(check_duplicates(replace(inputs, window_start=end - HOUR, window_end=end))) == set()


def test_doubles_with_an_open_incident_never_become_the_usual() -> None:
    shop = ShopData()
    onset = shop.window_end - 9 * 24 * HOUR
    shop.inject_duplicates(events=["Purchase"], factor=2, by="double_order_ids", onset=onset)
    inputs = replace(shop.inputs(), has_orders=False)
    assert _loud(check_duplicates(inputs)) == set()  # nine days of it before we looked: standing
    spans = (IncidentSpan(root_cause="duplicate_events", since=onset, event_names=("Purchase",)),)
    assert _loud(check_duplicates(replace(inputs, incident_spans=spans))) == {
        ("duplicates.double_counted", "Purchase")}
