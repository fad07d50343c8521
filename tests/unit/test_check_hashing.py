"""Hashing: per-field counters judged against the allowed bad share and the pixel's own history."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.checkdata import EventProfile, ShopData
from tools.checks.hashing import check_hashing
from tools.checks.registry import run_checks
from tools.checks.stats import beta_binomial_tail, binomial_tail, judge_share
from tools.checks.types import Finding, IncidentSpan
from tools.diagnosis.rules import diagnose
from tools.timeutil import DAY, HOUR


def _loud(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity != "info"]


def test_healthy_is_quiet() -> None:
    assert check_hashing(ShopData().inputs()) == []


@pytest.mark.parametrize(
    ("counter", "field", "code", "severity", "share"),
    [
        ("raw_pii", "em", "hashing.raw_pii", "critical", 0.5),
        ("uppercase_hex", "em", "hashing.uppercase_hex", "warning", 0.5),
        # Placeholder, non-SHA-256, hashed must-not-hash and malformed values are not usable keys, so
        # the ledger's key count leaves them out: 0.5 x keys flagged is 1/3 of the carrying events.
        ("placeholder", "ph", "hashing.placeholder", "warning", 1 / 3),
        ("not_sha256", "external_id", "hashing.not_sha256", "warning", 1 / 3),
        ("must_not_hash", "client_ip_address", "hashing.must_not_hash", "warning", 1 / 3),
        ("malformed", "fbc", "hashing.fbc_malformed", "warning", 1 / 3),
        ("malformed", "fbp", "hashing.fbp_malformed", "warning", 1 / 3),
    ],
)
def test_each_counter_raises_its_code(counter: str, field: str, code: str, severity: str, share: float) -> None:
    shop = ShopData()
    shop.inject_hashing(counter, field, share=0.5)
    findings = check_hashing(shop.inputs())
    finding = next(f for f in findings if f.code == code and f.event_name == "ViewContent")
    assert finding.severity == severity and finding.metrics["field"] == field
    assert finding.metrics["standing"] is False or finding.metrics["standing"] == 0
    assert abs(float(finding.metrics["observed"]) - share) < 0.1  # type: ignore[arg-type]


def test_share_below_threshold_is_quiet() -> None:
    shop = ShopData()
    shop.ledger[(shop.window_start, "ViewContent")]["raw_pii"] = {"em": 1}  # 1 of ~120
    assert check_hashing(shop.inputs()) == []


def test_a_deploy_sending_raw_emails_is_caught_in_its_first_hour() -> None:
    shop = ShopData()
    shop.inject_hashing("raw_pii", "em", share=1.0, onset=shop.window_start)
    loud = _loud(check_hashing(shop.inputs()))
    assert {f.event_name for f in loud} >= {"ViewContent", "AddToCart", "InitiateCheckout"}
    assert all(f.code == "hashing.raw_pii" and f.severity == "critical" for f in loud)
    assert all(float(f.metrics["p_value"]) < 1e-4 for f in loud)  # type: ignore[arg-type]


def test_a_standing_share_is_info_and_a_worse_one_is_news() -> None:
    shop = ShopData()
    shop.inject_hashing("placeholder", "em", share=0.05, onset=shop.hours[0])  # a steady ~5 %
    findings = check_hashing(shop.inputs())
    assert findings and _loud(findings) == []
    viewcontent = next(f for f in findings if f.event_name == "ViewContent")
    assert viewcontent.code == "hashing.placeholder" and viewcontent.metrics["standing"] == 1
    assert "standing" in viewcontent.summary and float(viewcontent.metrics["baseline"]) > 0.02  # type: ignore[arg-type]

    shop.inject_hashing("placeholder", "em", share=0.4, onset=shop.window_start)  # it worsens
    loud = _loud(check_hashing(shop.inputs()))
    finding = next(f for f in loud if f.event_name == "ViewContent")
    assert finding.code == "hashing.placeholder" and finding.severity == "warning"
    assert finding.metrics["fields"] == "em" and finding.metrics["standing"] == 0


def test_a_standing_share_makes_no_incident() -> None:
    shop = ShopData()
    shop.inject_hashing("placeholder", "em", share=0.05, onset=shop.hours[0])
    inputs = shop.inputs()
    assert diagnose(run_checks(inputs, only=["hashing"]), inputs) == []  # no incident, no rehash


def test_a_problem_that_began_three_days_ago_is_still_news() -> None:
    shop = ShopData()
    shop.inject_hashing("placeholder", "em", share=0.2, onset=shop.window_end - 3 * DAY)
    loud = _loud(check_hashing(shop.inputs()))
    assert any(f.event_name == "ViewContent" and f.code == "hashing.placeholder" for f in loud)


def test_a_standing_field_does_not_hide_a_new_one() -> None:
    shop = ShopData()
    for hour in shop.hours:  # the shop always sends country raw (the ledger hashes it at the door)
        for name in shop.server_events():
            row = shop.ledger[(hour, name)]
            row["key_counts"]["country"] = row["events"]
            row["raw_pii"] = {"country": row["events"]}
    quiet = check_hashing(shop.inputs())
    assert quiet and _loud(quiet) == []
    for name in shop.server_events():
        row = shop.ledger[(shop.window_start, name)]
        row["raw_pii"] = {"country": row["events"], "em": row["key_counts"]["em"]}
    finding = next(f for f in check_hashing(shop.inputs()) if f.event_name == "ViewContent")
    assert finding.severity == "critical" and finding.metrics["fields"] == "em"
    assert finding.metrics["standing_fields"] == "country"


def test_one_country_shop_and_repeating_attributes_never_dominate() -> None:
    shop = ShopData()
    # New today, at that: a shop that starts sending hashed country / gender / birth date / city.
    for hour in shop.since(shop.window_start):
        for name in shop.server_events():
            row = shop.ledger[(hour, name)]
            row["top_value_share"] = {"em": 0.03, "country": 1.0, "ge": 0.55, "db": 0.04, "ct": 0.4,
                                      "st": 0.6, "zp": 0.35}
    inputs = shop.inputs()
    assert check_hashing(inputs) == []
    assert diagnose(run_checks(inputs, only=["hashing"]), inputs) == []


def test_common_first_names_are_not_a_constant_but_a_constant_name_is() -> None:
    shop = ShopData()
    shop.inject_hashing("top_value_share", "fn", share=0.35, onset=shop.window_start)  # many "john"
    assert check_hashing(shop.inputs()) == []
    shop.inject_hashing("top_value_share", "fn", share=1.0, onset=shop.window_start)
    loud = _loud(check_hashing(shop.inputs()))
    assert any(f.code == "hashing.dominant_value" and f.metrics["field"] == "fn" for f in loud)


def test_dominant_identity_value_needs_enough_values() -> None:
    shop = ShopData()
    shop.inject_hashing("top_value_share", "em", share=0.9)
    findings = [f for f in check_hashing(shop.inputs()) if f.code == "hashing.dominant_value"]
    names = {f.event_name for f in findings}
    assert "ViewContent" in names
    assert "Lead" not in names  # a single Lead event is 100 % "dominant" by itself


def test_a_standing_dominant_email_is_info() -> None:
    shop = ShopData()
    shop.inject_hashing("top_value_share", "em", share=0.4, onset=shop.hours[0])  # a shared guest address
    findings = [f for f in check_hashing(shop.inputs()) if f.code == "hashing.dominant_value"]
    assert findings and {f.severity for f in findings} == {"info"}


SMALL = {"Purchase": EventProfile(3, 0.8, 1.0, 8.0)}


def _small_shop_with_standing_placeholders(seed: int) -> ShopData:
    """~3 Purchases an hour at the peak; each e-mail is a placeholder with probability 4 %."""
    shop = ShopData(seed=seed, profiles=SMALL)
    for hour in shop.hours:
        row = shop.ledger[(hour, "Purchase")]
        keys = row["key_counts"]["em"]
        row["placeholder"] = {"em": sum(shop.rng.random() < 0.04 for _ in range(keys))}
    return shop


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_shop_does_not_flap_on_a_standing_share(seed: int) -> None:
    shop = _small_shop_with_standing_placeholders(seed)
    inputs = shop.inputs()
    for back in range(72):  # three days of hourly audits
        end = shop.window_end - back * HOUR
        audited = replace(inputs, window_start=end - HOUR, window_end=end)
        assert _loud(check_hashing(audited)) == [], end


def test_small_shop_still_catches_a_new_problem_within_hours() -> None:
    shop = _small_shop_with_standing_placeholders(1)
    shop.inject_hashing("raw_pii", "em", share=1.0, onset=shop.window_end - 4 * HOUR)
    loud = _loud(check_hashing(shop.inputs()))
    assert [(f.code, f.event_name) for f in loud] == [("hashing.raw_pii", "Purchase")]


def test_share_statistics() -> None:
    # The beta-binomial tail tends to the binomial one when the usual share is known precisely.
    assert abs(beta_binomial_tail(3, 10, 3e6, 7e6) - binomial_tail(3, 10, 0.3)) < 1e-6
    assert binomial_tail(0, 10, 0.1) == 1.0 and binomial_tail(11, 10, 0.1) == 0.0
    # One stray bad value is never news; a clear count is, even with no history.
    assert not judge_share(1, 5, 0, 2000, floor=0.02).news
    assert not judge_share(1, 1, 0, 0, floor=0.02).news
    assert judge_share(3, 3, 0, 0, floor=0.02).news
    # A large standing share must rise by a quarter of itself, not by noise.
    assert not judge_share(330, 1000, 3000, 10000, floor=0.02).news
    assert judge_share(450, 1000, 3000, 10000, floor=0.02).news


def test_a_problem_with_an_open_incident_never_becomes_the_usual() -> None:
    shop = ShopData()
    onset = shop.window_end - 10 * DAY
    shop.inject_hashing("raw_pii", "em", share=1.0, onset=onset)
    assert _loud(check_hashing(shop.inputs())) == []  # ten days of it, unknown to us: standing
    open_incident = IncidentSpan(root_cause="hashing_error", since=onset)
    loud = _loud(check_hashing(shop.inputs(incident_spans=(open_incident,))))
    assert any(f.code == "hashing.raw_pii" and f.event_name == "ViewContent" for f in loud)
    other = IncidentSpan(root_cause="access_token_invalid", since=onset)
    assert _loud(check_hashing(shop.inputs(incident_spans=(other,)))) == []


def test_raw_emails_on_every_thin_event_are_caught_in_the_first_hour_together() -> None:
    """A deploy sends raw emails on every event of a small shop at night: no event name alone has
    enough emails in the hour, the pixel's events together do."""
    from tests.checkdata import EventProfile

    thin = {f"Custom{i}": EventProfile(1.2, 0.8, 1.0, 8.0) for i in range(8)}
    shop = ShopData(profiles=thin)
    shop.inject_hashing(counter="raw_pii", field="em", share=1.0, onset=shop.window_start)
    findings = [f for f in check_hashing(shop.inputs()) if f.code == "hashing.raw_pii" and f.severity != "info"]
    assert [f.event_name for f in findings] == [None]
