"""Diagnosis: every root cause from the findings that reveal it, with its fixes and parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.checkdata import WINDOW_END, ShopData, _lag
from tools.checks.registry import run_checks
from tools.diagnosis.catalogue import CATALOGUE
from tools.diagnosis.rules import diagnose
from tools.diagnosis.triage import triage
from tools.diagnosis.types import FIX_KINDS, ROOT_CAUSES, Incident
from tools.timeutil import HOUR


def _skipped_batches(shop: ShopData, hours: int = 2) -> None:
    """The batch sender skipped the hours before the window, then ran again in the window."""
    for k in range(hours + 1, 1, -1):
        hour = shop.window_end - k * HOUR
        for name in shop.server_events():
            shop._undelivered(hour, name)
        shop.unsent_hours.add(hour)


def _diagnose(inject: Callable[[ShopData], None], seed: int = 7) -> list[Incident]:
    shop = ShopData(seed=seed)
    inject(shop)
    inputs = shop.inputs()
    return diagnose(run_checks(inputs), inputs)


def test_catalogue_covers_every_cause_with_known_fix_kinds() -> None:
    assert set(CATALOGUE) == set(ROOT_CAUSES)
    for info in CATALOGUE.values():
        assert info.title and info.description and info.manual_remedy
        assert set(info.fix_kinds) <= set(FIX_KINDS)


@pytest.mark.parametrize("seed", [1, 7])
def test_healthy_traffic_and_a_sales_peak_make_no_incident(seed: int) -> None:
    assert _diagnose(lambda s: None, seed) == []
    assert _diagnose(lambda s: s.inject_sales_spike(), seed) == []


CASES: dict[str, Callable[[ShopData], None]] = {
    "browser_pixel_down": lambda s: s.inject_browser_down(),
    "server_events_down": lambda s: s.inject_server_down(events=["ViewContent", "AddToCart"]),
    "access_token_invalid": lambda s: s.inject_token_invalid(),
    "missed_batch": lambda s: _skipped_batches(s),
    "late_delivery": lambda s: s.inject_late_delivery(),
    "dedup_broken": lambda s: s.inject_dedup_broken(),
    "hashing_error": lambda s: s.inject_hashing("raw_pii", "em"),
    "match_keys_lost": lambda s: s.inject_keys_lost("fbc"),
    "malformed_parameter": lambda s: s.inject_malformed_fbc(),
    "duplicate_events": lambda s: s.inject_duplicates(),
    "event_renamed": lambda s: s.inject_rename(),
    "clock_skew": lambda s: s.inject_clock_skew(),
    "rate_limited": lambda s: s.inject_rate_limited(),
}


@pytest.mark.parametrize("cause", sorted(CASES))
def test_each_injected_problem_is_one_incident_with_its_cause(cause: str) -> None:
    incidents = _diagnose(CASES[cause])
    assert [i.root_cause for i in incidents] == [cause]
    incident = incidents[0]
    assert incident.confidence >= 0.6 and incident.severity in ("warning", "critical")
    assert incident.finding_ids and incident.event_names
    assert incident.id.startswith("i_") and incident.summary.startswith(CATALOGUE[cause].title)
    for fix in incident.fixes:
        assert fix.kind in CATALOGUE[cause].fix_kinds
        assert fix.requires_approval == (fix.kind != "manual")


def test_token_invalid_gets_manual_rotation_then_replay_of_failed_events() -> None:
    incident = _diagnose(CASES["access_token_invalid"])[0]
    assert [f.kind for f in incident.fixes] == ["manual", "replay"]
    params = incident.fixes[1].params
    assert params["since"] == "2026-11-24T12:00:00Z" and params["until"] == "2026-11-24T15:00:00Z"
    assert "failed" in params["statuses"] and "Purchase" in params["event_names"]


def test_missed_batch_replays_never_sent_events() -> None:
    (incident,) = _diagnose(CASES["missed_batch"])
    (fix,) = incident.fixes
    assert fix.kind == "replay" and "never_sent" in fix.params["statuses"]
    assert fix.params["since"] == "2026-11-24T12:00:00Z"


def test_nothing_sent_this_hour_is_undetermined_and_proposes_nothing() -> None:
    """Events recorded and nothing reaching Meta this hour: a skipped batch and a backlog look the
    same until the sender delivers again, so the incident names both and proposes no replay."""
    (incident,) = _diagnose(lambda s: s.inject_missed_batch())
    assert incident.root_cause == "undetermined" and incident.severity == "critical"
    assert incident.candidates == ["missed_batch", "late_delivery"] and incident.next_hour
    assert all(fix.kind == "manual" for fix in incident.fixes)


def test_an_undetermined_incident_gives_way_to_the_cause_the_next_hour_shows() -> None:
    (undetermined,) = _diagnose(lambda s: s.inject_missed_batch(onset=s.window_end - HOUR))
    later = ShopData(window_end=WINDOW_END + HOUR)
    _skipped_batches(later, hours=1)
    inputs = later.inputs()
    decided = diagnose(run_checks(inputs), inputs)
    out = triage(decided, [undetermined])
    assert [(t.status, t.incident.root_cause) for t in out] == [("new", "missed_batch"),
                                                                ("superseded", "undetermined")]


def test_a_queue_draining_hours_late_is_late_delivery_not_a_missed_batch() -> None:
    """Nothing sent after the first unsent hour, and what went out just before it went out hours late:
    the sender is delivering a backlog, not skipping batches. No replay of events still queued."""
    def backlog(shop: ShopData) -> None:
        shop.inject_missed_batch(onset=shop.window_end - 2 * HOUR)
        drained = shop.window_end - 3 * HOUR
        for name in shop.server_events():
            row = shop.ledger[(drained, name)]
            row["lag_buckets"] = _lag(row["events"], bucket=4)  # 1-3 h after event_time

    incidents = _diagnose(backlog)
    assert [i.root_cause for i in incidents] == ["late_delivery"]
    # The same unsent hours with the hour before delivered on time: the queue is not draining.
    (stopped,) = _diagnose(lambda s: s.inject_missed_batch(onset=s.window_end - 2 * HOUR))
    assert stopped.root_cause == "undetermined"


def test_unsent_hours_followed_by_sent_ones_are_a_missed_batch() -> None:
    """A later hour went out while earlier ones did not: the sender moved on past them."""
    def gap(shop: ShopData) -> None:
        shop.inject_missed_batch(onset=shop.window_end - 4 * HOUR)
        for name in shop.server_events():  # the last hour's batch ran
            row = shop.ledger[(shop.window_end - HOUR, name)]
            row["undelivered"], row["lag_buckets"] = 0, _lag(row["events"])
            shop.meta_server_override.pop((shop.window_end - HOUR, name), None)
        shop.unsent_hours.discard(shop.window_end - HOUR)

    (incident,) = _diagnose(gap)
    assert incident.root_cause == "missed_batch"
    assert any(f.kind == "replay" for f in incident.fixes)


def test_malformed_fbc_gets_repair_and_replay() -> None:
    (incident,) = _diagnose(CASES["malformed_parameter"])
    (fix,) = incident.fixes
    assert fix.kind == "repair_and_replay" and fix.params["parameter"] == "fbc"
    assert fix.params["statuses"] == ["failed"] and fix.params["event_names"]


def test_hashing_error_gets_rehash_for_the_fields() -> None:
    (incident,) = _diagnose(CASES["hashing_error"])
    assert [f.kind for f in incident.fixes] == ["rehash"]
    assert incident.fixes[0].params["fields"] == ["em"] and incident.severity == "critical"


def test_server_events_down_replays_only_what_the_ledger_holds() -> None:
    (gone,) = _diagnose(CASES["server_events_down"])
    assert [f.kind for f in gone.fixes] == ["manual"]  # the shop never produced them

    def stuck(shop: ShopData) -> None:
        for hour in shop.since(None):  # recorded, but Meta has none and the ledger holds them
            shop.ledger[(hour, "ViewContent")]["undelivered"] = shop.ledger[(hour, "ViewContent")]["events"]
            shop.meta_server_override[(hour, "ViewContent")] = 0
    (held,) = _diagnose(stuck)
    assert held.root_cause == "server_events_down"
    replay = next(f for f in held.fixes if f.kind == "replay")
    assert replay.params["event_names"] == ["ViewContent"] and replay.requires_approval


def test_rename_pairs_old_and_new_name() -> None:
    (incident,) = _diagnose(CASES["event_renamed"])
    assert incident.event_names == ["AddToCart", "add_to_cart"]


def test_confidence_is_higher_when_findings_agree() -> None:
    # Token invalid with its server drop is surer than a lone dedup-key finding on one event.
    token = _diagnose(CASES["access_token_invalid"])[0]
    lone = _diagnose(lambda s: s.inject_dedup_broken(onset=s.window_end - 12 * HOUR, events=["Purchase"]))[0]
    assert token.confidence > lone.confidence


def test_unexplained_warning_falls_back_with_low_confidence() -> None:
    shop = ShopData()
    shop.transport_errors[shop.window_start] = 5
    inputs = shop.inputs()
    (incident,) = diagnose(run_checks(inputs), inputs)
    assert incident.root_cause == "late_delivery" and incident.confidence <= 0.5


def test_meta_unreachable_alone_is_no_incident() -> None:
    assert _diagnose(lambda s: s.inject_meta_unreachable()) == []


def test_ids_and_fingerprints_are_deterministic_and_hour_specific() -> None:
    first = _diagnose(CASES["access_token_invalid"])[0]
    again = _diagnose(CASES["access_token_invalid"])[0]
    assert (first.id, first.fingerprint) == (again.id, again.fingerprint)
    shop = ShopData()
    shop.inject_token_invalid(onset=shop.window_end - 5 * HOUR)
    inputs = shop.inputs()
    earlier = replace(inputs, window_start=inputs.window_start - HOUR, window_end=inputs.window_end - HOUR)
    previous = diagnose(run_checks(earlier), earlier)[0]
    assert previous.fingerprint == first.fingerprint and previous.id != first.id


def test_late_delivery_explains_the_missing_server_counts_of_the_window() -> None:
    def late_and_queued(shop: ShopData) -> None:
        shop.inject_late_delivery()
        for name in shop.server_events():  # this hour's events are still queued: Meta has none yet
            row = shop.ledger[(shop.window_start, name)]
            row["undelivered"] = row["events"]
            shop.meta_server_override[(shop.window_start, name)] = 0

    (incident,) = _diagnose(late_and_queued)
    assert incident.root_cause == "late_delivery"
    assert [f.kind for f in incident.fixes] == ["manual", "replay"]
    assert incident.fixes[1].params["statuses"] == ["pending"]


def test_orders_unmatched_because_purchases_arrive_days_late_are_not_a_lost_pipeline() -> None:
    """40 % of server Purchases reach the ledger more than 48 h after checkout: their orders look
    unmatched until they land. That gap is the lateness (dedup_broken), with no backfill from orders,
    which would count those Purchases twice once they arrive."""
    from tools.checks.types import make_finding

    shop = ShopData()
    inputs = shop.inputs()
    late = make_finding(inputs, check="dedupe", code="dedupe.reasons", event_name="Purchase", severity="warning",
                        summary="late", metrics={"main_reason": "server_late", "share_server_late": 0.4})
    gap = make_finding(inputs, check="parity", code="parity.orders_unmatched", event_name="Purchase",
                       severity="critical", summary="orders", metrics={"source": "server", "witness": "orders"})
    incidents = diagnose([late, gap], inputs)
    assert [i.root_cause for i in incidents] == ["dedup_broken"]
    assert not any(fix.kind == "backfill_from_orders" for i in incidents for fix in i.fixes)
    # Without the late copies, the same orders gap is a lost server pipeline.
    assert [i.root_cause for i in diagnose([gap], inputs)] == ["server_events_down"]
