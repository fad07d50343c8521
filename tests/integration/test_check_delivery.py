"""Delivery: Graph error codes on our sends, events never sent, and failed reads of Meta."""

from __future__ import annotations

from dataclasses import replace

from tests.checkdata import ShopData
from tools.checks.delivery import check_delivery, parse_error_key
from tools.checks.types import Finding, MetaReadError


def _by_code(findings: list[Finding]) -> dict[str, Finding]:
    return {f.code: f for f in findings}


def test_parse_error_key() -> None:
    assert parse_error_key("100/2804001") == (100, 2804001)
    assert parse_error_key("190/") == (190, None)
    assert parse_error_key("oops") == (None, None)


def test_healthy_is_quiet() -> None:
    assert check_delivery(ShopData().inputs()) == []


def test_token_invalid_from_sends() -> None:
    shop = ShopData()
    shop.inject_token_invalid()
    finding = _by_code(check_delivery(shop.inputs()))["delivery.token_invalid"]
    assert finding.severity == "critical" and finding.metrics["code"] == 190
    assert finding.metrics["subcode"] == 463 and finding.metrics["source"] == "deliveries"


def test_rejected_carries_code_and_subcode() -> None:
    shop = ShopData()
    shop.inject_malformed_fbc()
    finding = _by_code(check_delivery(shop.inputs()))["delivery.rejected"]
    assert (finding.metrics["code"], finding.metrics["subcode"]) == (100, 2804001)
    assert finding.severity == "critical" and "subcode 2804001" in finding.evidence[0]


def test_rate_limited() -> None:
    shop = ShopData()
    shop.inject_rate_limited()
    finding = _by_code(check_delivery(shop.inputs()))["delivery.rate_limited"]
    assert finding.metrics["code"] == 17 and int(finding.metrics["retried_attempts"]) > 0  # type: ignore[arg-type]


def test_transport_errors_and_partial_receipt() -> None:
    shop = ShopData()
    shop.transport_errors[shop.window_start] = 4
    assert "delivery.transport_errors" in _by_code(check_delivery(shop.inputs()))
    partial = ShopData()
    inputs = partial.inputs()
    rows = tuple(replace(r, events_received=r.events_sent // 2) if r.hour == inputs.window_start else r
                 for r in inputs.delivery_hours)
    finding = _by_code(check_delivery(replace(inputs, delivery_hours=rows)))["delivery.partial_receipt"]
    assert int(finding.metrics["events_received"]) < int(finding.metrics["events_sent"])  # type: ignore[arg-type]


def test_not_sent_when_nothing_was_attempted() -> None:
    shop = ShopData()
    shop.inject_missed_batch()
    finding = _by_code(check_delivery(shop.inputs()))["delivery.not_sent"]
    assert finding.severity == "critical" and int(finding.metrics["undelivered"]) > 50  # type: ignore[arg-type]
    assert "Purchase" in str(finding.metrics["event_names"])


def test_not_sent_is_quiet_for_a_daily_batch_uploader() -> None:
    shop = ShopData()
    shop.unsent_hours = {h for h in shop.hours if h.hour != 2}  # sends once a day at 02:00
    for hour in shop.since(None):
        for name in shop.server_events():
            shop.ledger[(hour, name)]["undelivered"] = shop.ledger[(hour, name)]["events"]
    assert "delivery.not_sent" not in _by_code(check_delivery(shop.inputs()))


def test_meta_unreachable_is_a_warning_without_the_raw_message() -> None:
    shop = ShopData()
    shop.inject_meta_unreachable()
    inputs = replace(shop.inputs(), meta_read_errors=(
        MetaReadError("stats", "unreachable", "GET https://graph/x?access_token=SECRET failed"),))
    finding = _by_code(check_delivery(inputs))["delivery.meta_unreachable"]
    assert finding.severity == "warning" and finding.metrics["kind"] == "unreachable"
    assert "SECRET" not in finding.model_dump_json()


def test_token_refused_on_reads_and_sends_is_one_finding() -> None:
    shop = ShopData()
    shop.inject_token_invalid()
    shop.inject_meta_unreachable(kind="token_invalid", code=190)
    findings = check_delivery(shop.inputs())
    tokens = [f for f in findings if f.code == "delivery.token_invalid"]
    assert len(tokens) == 1 and tokens[0].metrics["source"] == "both"
    assert "delivery.meta_unreachable" not in _by_code(findings)
