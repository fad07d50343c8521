"""The read-only toolbox: compact JSON over one audit's data, clear errors, nothing that writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import pytest

from agent.reasoning.toolbox import MAX_RESULT_CHARS, build_toolbox
from tests.checkdata import healthy
from tools.checks.registry import run_checks
from tools.checks.types import AuditInputs, Finding
from tools.diagnosis.rules import diagnose
from tools.diagnosis.types import Incident

READ_ONLY_TOOLS = {"hourly_counts", "match_key_coverage", "delivery_errors", "hashing_flags",
                   "dataset_quality", "finding_detail", "list_incidents", "sender_changes"}


@dataclass(frozen=True)
class Scenario:
    inputs: AuditInputs
    findings: list[Finding]
    incidents: list[Incident]


@cache
def scenario(kind: str = "token_invalid") -> Scenario:
    """A shop's four weeks of traffic with one problem injected, checked and diagnosed."""
    shop = healthy()
    if kind == "token_invalid":
        shop.inject_token_invalid()
    elif kind == "keys_lost":
        shop.inject_keys_lost("fbc")
    elif kind == "raw_pii":
        shop.inject_hashing("raw_pii", "em")
    elif kind == "meta_unreachable":
        shop.inject_token_invalid()
        shop.inject_meta_unreachable()
    inputs = shop.inputs()
    findings = run_checks(inputs)
    return Scenario(inputs, findings, diagnose(findings, inputs))


def call(kind: str, name: str, **args: object) -> dict:
    s = scenario(kind)
    text = build_toolbox(s.inputs, s.findings, s.incidents).execute(name, dict(args))
    assert len(text) <= MAX_RESULT_CHARS
    return json.loads(text)


def test_the_registry_offers_only_read_only_tools():
    s = scenario()
    box = build_toolbox(s.inputs, s.findings, s.incidents)
    assert set(box.names) == READ_ONLY_TOOLS
    for spec in box.specs:
        assert spec.parameters["type"] == "object"
        assert spec.to_openai()["function"]["name"] == spec.name


def test_without_an_audit_only_finding_and_incident_tools_are_offered():
    box = build_toolbox(None, [], [])
    assert set(box.names) == {"finding_detail", "list_incidents"}
    assert json.loads(box.execute("list_incidents", {})) == {"incidents": []}


def test_hourly_counts_shows_meta_server_zero_against_its_usual_level():
    result = call("token_invalid", "hourly_counts", event_name="ViewContent", source="server", hours=6)
    hours = result["hours"]
    assert len(hours) == 6
    assert hours[-1]["hour"] == "2026-11-24T14:00:00Z"
    assert hours[-1]["count"] == 0 and hours[-1]["usual"] > 50
    assert hours[0]["count"] > 0  # before the token broke
    ledger = call("token_invalid", "hourly_counts", event_name="ViewContent", source="ledger", hours=2)
    assert ledger["hours"][-1]["count"] > 50  # the ledger still recorded them


def test_hourly_counts_without_meta_reads_says_so_and_points_to_the_ledger():
    result = call("meta_unreachable", "hourly_counts", event_name="Purchase", source="browser")
    assert "unreachable" in result["error"] and "ledger" in result["error"]


@pytest.mark.parametrize(("args", "message"), [
    ({"event_name": "Nope", "source": "server"}, "unknown event_name"),
    ({"event_name": "Purchase", "source": "pixel"}, "source must be one of"),
    ({"event_name": "Purchase", "source": "server", "hours": 0}, "between 1 and"),
    ({"event_name": "Purchase", "source": "server", "hours": "many"}, "whole number"),
    ({"source": "server"}, "event_name is required"),
    ({"event_name": "Purchase", "source": "server", "delete": True}, "unexpected argument"),
])
def test_bad_arguments_get_a_clear_error_not_a_crash(args, message):
    assert message in call("token_invalid", "hourly_counts", **args)["error"]


def test_unknown_tool_is_an_error_listing_the_tools():
    s = scenario()
    result = json.loads(build_toolbox(s.inputs, s.findings, s.incidents).execute("approve_fix", {}))
    assert "unknown tool" in result["error"] and "hourly_counts" in result["error"]


def test_match_key_coverage_shows_the_lost_key():
    result = call("keys_lost", "match_key_coverage", key="fbc", event_name="Purchase", hours=48)
    shares = [h["share"] for h in result["hours"] if h["events"]]
    assert shares[0] > 0.2 and shares[-1] == 0.0
    assert "use one of" in call("keys_lost", "match_key_coverage", key="email")["error"]


def test_delivery_errors_counts_failures_by_code_and_subcode():
    result = call("token_invalid", "delivery_errors", hours=3)
    assert result["errors"]["190/463"] == result["failed_attempts"] > 0
    assert result["hours"][-1]["failed"] == result["hours"][-1]["attempts"]


def test_hashing_flags_sums_raw_values_per_field():
    result = call("raw_pii", "hashing_flags", hours=3)
    assert result["flags"]["raw_pii"]["em"] > 0
    assert call("token_invalid", "hashing_flags", hours=3)["flags"] == {}


def test_dataset_quality_gives_the_latest_snapshot_or_why_not():
    result = call("token_invalid", "dataset_quality", event_name="Purchase")
    assert result["events"][0]["emq"] == 8.8
    assert result["events"][0]["dedupe_key_feedback"][0]["key"] == "event_id"
    assert "unreachable" in call("meta_unreachable", "dataset_quality")["error"]


def test_finding_detail_and_list_incidents():
    s = scenario()
    finding = s.findings[0]
    detail = call("token_invalid", "finding_detail", finding_id=finding.id)
    assert detail["code"] == finding.code and detail["metrics"] == finding.metrics
    assert "no finding with that id" in call("token_invalid", "finding_detail", finding_id="f_x")["error"]
    incidents = call("token_invalid", "list_incidents")["incidents"]
    assert incidents[0]["root_cause"] == "access_token_invalid"


def test_long_spans_are_cut_to_a_bounded_result():
    result = call("token_invalid", "delivery_errors", hours=168)
    assert result.get("truncated") and result["hours"][-1]["hour"] == "2026-11-24T14:00:00Z"
