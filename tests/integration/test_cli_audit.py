"""``capi-agent ingest`` then ``capi-agent audit --format json`` through the CLI, against the simulator
over loopback: the JSON contract, ``--fail-on``, and an audit that survives Meta being unreachable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import build_app
from tests.agentworld import small_scenario
from tools.diagnosis.types import ROOT_CAUSES
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.scenario import materialize
from tools.timeutil import to_iso

CONTRACT_FINDING = {"id", "pixel_id", "check", "code", "event_name", "severity", "summary", "metrics"}
CONTRACT_INCIDENT = {"id", "pixel_id", "root_cause", "confidence", "event_names", "finding_ids", "summary",
                     "fixes"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, object]:
    """A small missed-batch shop ingested through the CLI into its own SQLite ledger."""
    folder = tmp_path_factory.mktemp("cli-audit")
    scenario = small_scenario("missed_batch.v1", days=8)
    files = materialize(scenario, folder)
    url = f"sqlite:///{folder / 'ledger.db'}"
    result = CliRunner().invoke(build_app(), ["ingest", str(files.events_path), "--orders",
                                              str(files.orders_path), "--database-url", url])
    assert result.exit_code == 0, result.output
    return files.meta_state_path, url, scenario


def audit(url: str, at: str, *extra: str, env: dict[str, str]) -> tuple[int, dict]:
    result = CliRunner().invoke(build_app(), ["audit", "--at", at, "--format", "json", "--database-url", url,
                                              *extra], env=env)
    return result.exit_code, json.loads(result.stdout)


def test_audit_json_keeps_the_contract_and_finds_the_missed_batch(shop, monkeypatch) -> None:
    state_path, url, scenario = shop
    with run_simulator_in_thread(SimState.load(state_path)) as sim:
        env = {"META_GRAPH_URL": sim.url, "META_ACCESS_TOKEN": "sim-token", "CAPI_DATABASE_URL": url}
        code, report = audit(url, to_iso(scenario.audit_at), "--fail-on", "critical", env=env)
    assert code == 1  # a critical finding exists
    assert report["window"] == {"start": "2026-11-12T18:00:00Z", "end": "2026-11-12T19:00:00Z"}
    assert report["pixels"][0]["pixel_id"] == scenario.pixel_id and report["pixels"][0]["status"] == "critical"
    assert all(set(f) >= CONTRACT_FINDING for f in report["findings"])
    assert all(set(i) >= CONTRACT_INCIDENT for i in report["incidents"])
    assert {i["root_cause"] for i in report["incidents"]} <= set(ROOT_CAUSES)
    assert {i["root_cause"] for i in report["incidents"]} == {"missed_batch"}
    replay = [fix for i in report["incidents"] for fix in i["fixes"] if fix["kind"] == "replay"]
    assert replay and replay[0]["requires_approval"] and replay[0]["params"]["since"]


def test_audit_without_meta_still_runs_the_ledger_checks(shop) -> None:
    _, url, scenario = shop
    # Nothing listens on port 9: Meta is unreachable, and the audit says so instead of crashing.
    env = {"META_GRAPH_URL": "http://127.0.0.1:9", "META_ACCESS_TOKEN": "sim-token", "CAPI_DATABASE_URL": url}
    code, report = audit(url, to_iso(scenario.audit_at), env=env)
    assert code == 0  # no --fail-on
    codes = {f["code"] for f in report["findings"]}
    assert "delivery.meta_unreachable" in codes
    assert "delivery.not_sent" in codes  # the ledger side still sees the unsent window


def test_fail_on_warning_is_quiet_on_a_healthy_hour(shop) -> None:
    state_path, url, scenario = shop
    earlier = scenario.audit_at.replace(hour=10)  # the morning before the batch was skipped
    with run_simulator_in_thread(SimState.load(state_path)) as sim:
        sim.state.set_now(earlier)
        env = {"META_GRAPH_URL": sim.url, "META_ACCESS_TOKEN": "sim-token", "CAPI_DATABASE_URL": url}
        code, report = audit(url, to_iso(earlier), "--fail-on", "warning", env=env)
    assert [f["code"] for f in report["findings"] if f["severity"] != "info"] == []
    assert code == 0 and report["incidents"] == []
