"""Hashing: per-field counters against the allowed bad share."""

from __future__ import annotations

import pytest

from tests.checkdata import ShopData
from tools.checks.hashing import check_hashing


def test_healthy_is_quiet() -> None:
    assert check_hashing(ShopData().inputs()) == []


@pytest.mark.parametrize(
    ("counter", "field", "code", "severity"),
    [
        ("raw_pii", "em", "hashing.raw_pii", "critical"),
        ("placeholder", "ph", "hashing.placeholder", "warning"),
        ("uppercase_hex", "em", "hashing.uppercase_hex", "warning"),
        ("not_sha256", "external_id", "hashing.not_sha256", "warning"),
        ("must_not_hash", "client_ip_address", "hashing.must_not_hash", "warning"),
        ("malformed", "fbc", "hashing.fbc_malformed", "warning"),
        ("malformed", "fbp", "hashing.fbp_malformed", "warning"),
    ],
)
def test_each_counter_raises_its_code(counter: str, field: str, code: str, severity: str) -> None:
    shop = ShopData()
    shop.inject_hashing(counter, field, share=0.5)
    findings = check_hashing(shop.inputs())
    finding = next(f for f in findings if f.code == code and f.event_name == "ViewContent")
    assert finding.severity == severity and finding.metrics["field"] == field
    assert 0.4 < float(finding.metrics["observed"]) < 0.6  # type: ignore[arg-type]


def test_share_below_threshold_is_quiet() -> None:
    shop = ShopData()
    shop.ledger[(shop.window_start, "ViewContent")]["raw_pii"] = {"em": 1}  # 1 of ~120
    assert check_hashing(shop.inputs()) == []


def test_dominant_value_needs_enough_values() -> None:
    shop = ShopData()
    shop.inject_hashing("top_value_share", "em", share=0.9)
    findings = [f for f in check_hashing(shop.inputs()) if f.code == "hashing.dominant_value"]
    names = {f.event_name for f in findings}
    assert "ViewContent" in names
    assert "Lead" not in names  # a single Lead event is 100 % "dominant" by itself
