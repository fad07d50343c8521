"""EMQ: Meta's score against floor, goal and last week; which match key fell (ledger)."""

from __future__ import annotations

import pytest

from tests.checkdata import ShopData
from tools.checks.emq import check_emq
from tools.timeutil import HOUR


def test_standing_below_goal_is_info_only() -> None:
    findings = check_emq(ShopData().inputs())
    assert [(f.code, f.event_name, f.severity) for f in findings] == [("emq.below_goal", "AddToCart", "info")]


def test_new_fall_below_floor_is_critical_with_drop() -> None:
    shop = ShopData()
    shop.quality_now["Purchase"]["score"] = 6.0
    findings = {f.code: f for f in check_emq(shop.inputs()) if f.event_name == "Purchase"}
    assert findings["emq.below_floor"].severity == "critical"
    assert findings["emq.below_floor"].metrics["week_earlier"] == 8.8
    assert findings["emq.drop"].metrics["drop"] == 2.8


def test_standing_low_score_is_info_not_an_alarm() -> None:
    shop = ShopData()
    for _, snapshot in shop.quality_history:
        snapshot["Purchase"]["score"] = 6.2
    shop.quality_now["Purchase"]["score"] = 6.1
    findings = {f.code: f for f in check_emq(shop.inputs()) if f.event_name == "Purchase"}
    assert findings["emq.below_floor"].severity == "info" and "emq.drop" not in findings


def test_key_coverage_drop_names_the_key() -> None:
    shop = ShopData()
    shop.inject_keys_lost("fbc", events=["ViewContent"], emq_fall=0.0)
    findings = [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop"]
    assert len(findings) == 1
    finding = findings[0]
    assert finding.event_name == "ViewContent" and finding.metrics["key"] == "fbc"
    assert finding.metrics["observed"] == 0.0 and 0.3 < float(finding.metrics["baseline"]) < 0.4  # type: ignore[arg-type]


def test_key_coverage_noise_on_small_events_is_quiet() -> None:
    shop = ShopData()
    for hour in shop.since(None):  # Purchase keeps em on 60 % instead of 85 %: small-sample noise
        row = shop.ledger[(hour, "Purchase")]
        row["key_counts"]["em"] = round(row["events"] * 0.6)
    assert [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop"] == []


def test_no_quality_snapshot_is_fine() -> None:
    shop = ShopData()
    shop.inject_meta_unreachable()
    assert check_emq(shop.inputs()) == []


def test_a_key_lost_on_a_thin_event_shows_within_hours() -> None:
    """fbc on a third of Purchases at a few an hour (fewer at night): no single hour can show its
    loss, twenty hours of evidence together do: eighteen meet the margin test, two more the chance
    test (``chance_alarm``: luck ruled out across every key series and every audit of a week)."""
    from tests.checkdata import PROFILES, EventProfile

    shop = ShopData(profiles={**PROFILES, "Purchase": EventProfile(4.0, 0.8, 1.0, 8.8)})
    shop.inject_keys_lost(key="fbc", onset=shop.window_end - 20 * HOUR, events=["Purchase"], emq_fall=0.0)
    finding = next(f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop")
    assert finding.event_name == "Purchase" and finding.metrics["key"] == "fbc"


def test_a_key_that_was_never_there_is_no_change() -> None:
    shop = ShopData()
    for (_, _name), row in shop.ledger.items():
        row["key_counts"]["ph"] = 0
    assert not [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop"]


def test_a_key_on_few_events_that_is_gone_is_news() -> None:
    """fbc on 5 % of events (the share that came from an ad click) falling to none is 5 points only,
    but the key is gone."""
    from tools.checks.emq import _is_news

    assert _is_news(0.05, 0.0) and not _is_news(0.05, 0.04) and not _is_news(0.02, 0.0)


def test_a_retry_storm_does_not_dilute_key_coverage() -> None:
    """Repeats of an event_id already recorded are the same people again: coverage is over distinct
    events, whether or not the repeats were counted with their keys."""
    from tests.checkdata import KEY_SHARES

    shop = ShopData()
    shop.inject_retry_storm(onset=shop.window_end - 8 * HOUR, factor=4)
    for (_hour, _name), row in shop.ledger.items():
        if row["duplicate_event_ids"]:  # the repeats counted as events, without their keys
            distinct = row["events"] - row["duplicate_event_ids"]
            row["key_counts"] = {k: round(distinct * s) for k, s in KEY_SHARES.items()}
    assert not [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop"]


def _small_shop(seed: int = 7) -> ShopData:
    from tests.checkdata import PROFILES, EventProfile

    small = {"ViewContent": EventProfile(4.0, 0.85, 1.0, 8.3), "AddToCart": EventProfile(2.0, 0.85, 1.0, 7.7),
             "InitiateCheckout": EventProfile(1.5, 0.85, 1.0, 8.2), "Purchase": EventProfile(1.0, 0.8, 1.0, 8.8)}
    return ShopData(seed=seed, profiles={**PROFILES, **small})


def test_a_key_lost_on_every_event_of_a_small_shop_adds_up_across_events() -> None:
    """fbc (35 %) gone from every event of a shop sending a few events an hour: the same change point
    in four events adds up to what no single event shows yet (in 15 hours: 10 meet the margin test,
    the chance test across the shop's keys and a week of audits wants five more)."""
    shop = _small_shop()
    shop.inject_keys_lost(key="fbc", onset=shop.window_end - 15 * HOUR, events=None, emq_fall=0.0)
    findings = [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop"]
    joint = [f for f in findings if f.event_name is None]
    assert len(joint) == 1 and joint[0].metrics["key"] == "fbc" and joint[0].metrics["observed"] == 0.0
    assert len(str(joint[0].metrics["event_names"]).split(",")) >= 2
    assert float(joint[0].metrics["evidence_llr"]) >= 7  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_small_healthy_shop_loses_no_key_across_events(seed: int) -> None:
    assert not [f for f in check_emq(_small_shop(seed).inputs()) if f.code == "emq.key_coverage_drop"]


def test_four_thin_events_without_a_key_on_ninety_percent_are_not_yet_a_loss() -> None:
    """fbp on 90 % of Purchases, the last four Purchases without it: a chance of 1e-4 that the many keys
    and events tested meet every few days. The margin on the share (80 % of 90 %) wants about seven."""
    from tests.checkdata import PROFILES, EventProfile

    shop = ShopData(profiles={**PROFILES, "Purchase": EventProfile(1.0, 0.8, 1.0, 8.8)})
    for hour in shop.hours[-30:]:
        row = shop.ledger[(hour, "Purchase")]
        row["key_counts"]["fbp"] = round(row["events"] * 0.9)
    recent = [h for h in shop.hours[-6:] if shop.ledger[(h, "Purchase")]["events"]]
    missing = 0
    for hour in reversed(recent):
        row = shop.ledger[(hour, "Purchase")]
        take = min(row["events"], 4 - missing)
        row["key_counts"]["fbp"] = row["events"] - take
        missing += take
        if missing == 4:
            break
    assert missing == 4
    assert not [f for f in check_emq(shop.inputs()) if f.code == "emq.key_coverage_drop" and f.metrics["key"] == "fbp"]


def test_a_chance_streak_on_a_thin_key_is_not_a_loss() -> None:
    """em on 15 % of a small shop's ViewContents, none on the last 72: a 6e-6 chance for one series,
    and it passes the margin test (9 nats); but among the shop's key series, each audited every hour
    of a week, such a streak comes every few months, so it is no loss (the chance test wants ~13 nats).
    The same streak twice as long is one."""
    import random

    from tests.checkdata import PROFILES, EventProfile

    def shop_with_bare_tail(bare_events: int) -> ShopData:
        shop = ShopData(profiles={**PROFILES, "ViewContent": EventProfile(30.0, 0.85, 1.0, 8.3)})
        rng = random.Random(3)
        bare = 0
        for hour in reversed(shop.hours):
            row = shop.ledger[(hour, "ViewContent")]
            if bare < bare_events:
                row["key_counts"]["em"] = 0
                bare += row["events"]
            else:
                row["key_counts"]["em"] = sum(rng.random() < 0.15 for _ in range(row["events"]))
        return shop

    def em_drops(shop: ShopData) -> list[object]:
        return [f for f in check_emq(shop.inputs())
                if f.code == "emq.key_coverage_drop" and f.metrics["key"] == "em"]

    assert em_drops(shop_with_bare_tail(72)) == []
    assert [f.event_name for f in em_drops(shop_with_bare_tail(144))] == ["ViewContent"]  # type: ignore[attr-defined]
