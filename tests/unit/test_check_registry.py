"""The registry runs every check, in a stable order, and refuses unknown names."""

from __future__ import annotations

import json
import typing

import pytest

from tests.checkdata import ShopData
from tools.checks.registry import CHECKS, run_checks
from tools.checks.types import SEVERITY_RANK, CheckName


def test_every_check_is_registered() -> None:
    assert set(CHECKS) == set(typing.get_args(CheckName))


def test_findings_sorted_by_severity_then_code_and_json_able() -> None:
    shop = ShopData()
    shop.inject_token_invalid()
    shop.inject_hashing("placeholder", "ph", share=0.5)
    findings = run_checks(shop.inputs())
    keys = [(-SEVERITY_RANK[f.severity], f.code, f.event_name or "") for f in findings]
    assert keys == sorted(keys) and len(findings) > 3
    assert len({f.id for f in findings}) == len(findings)
    for finding in findings:
        json.dumps(finding.metrics)  # scalars only
        assert finding.summary and "\n" not in finding.summary and finding.evidence


def test_only_and_unknown() -> None:
    shop = ShopData()
    shop.inject_token_invalid()
    assert {f.check for f in run_checks(shop.inputs(), only=["delivery"])} == {"delivery"}
    with pytest.raises(ValueError, match="unknown check"):
        run_checks(shop.inputs(), only=["nope"])


def test_same_problem_same_ids_next_hour_same_fingerprint() -> None:
    shop = ShopData()
    shop.inject_token_invalid()
    first = {f.code: f for f in run_checks(shop.inputs())}
    again = {f.code: f for f in run_checks(shop.inputs())}
    assert {c: f.id for c, f in first.items()} == {c: f.id for c, f in again.items()}
