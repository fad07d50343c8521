"""The fix-kind registry is the one list: literals, the chat tool, previews and the diagnosis read it;
and the diagnosis proposes backfill_from_orders only where the orders lost their server Purchases."""

from __future__ import annotations

from typing import get_args

import pytest

from agent.reasoning.propose_tool import PROPOSABLE_KINDS, PROPOSE_FIX_SPEC, proposal_request
from agent.reasoning.toolbox import ToolArgumentError
from tests.checkdata import HOUR, ShopData
from tools.checks.registry import run_checks
from tools.diagnosis.catalogue import CATALOGUE
from tools.diagnosis.rules import diagnose
from tools.diagnosis.types import FIX_KINDS, FixSuggestion
from tools.fixes.preview import parse_params
from tools.fixes.registry import KIND_MODULES, RUNNABLE_KINDS, UnknownFixKind, all_kinds, fix_kind
from tools.fixes.types import FixKindToRun, FixPreview
from tools.timeutil import parse_iso, to_iso


def test_every_registered_module_exposes_its_kind_and_the_literals_follow_the_list() -> None:
    assert [kind.name for kind in all_kinds()] == list(KIND_MODULES) == list(RUNNABLE_KINDS)
    assert get_args(FixKindToRun) == RUNNABLE_KINDS
    assert (*RUNNABLE_KINDS, "manual") == FIX_KINDS
    assert FixSuggestion(kind="backfill_from_orders", summary="x").kind == "backfill_from_orders"
    with pytest.raises(ValueError):
        FixSuggestion(kind="teleport", summary="x")  # type: ignore[arg-type]
    assert set(get_args(FixPreview.model_fields["kind"].annotation)) == set(RUNNABLE_KINDS)
    for info in CATALOGUE.values():
        assert set(info.fix_kinds) <= set(FIX_KINDS)


def test_the_chat_tool_offers_the_registered_kinds() -> None:
    assert tuple(k.name for k in all_kinds() if k.proposable_in_chat) == PROPOSABLE_KINDS
    assert PROPOSE_FIX_SPEC.parameters["properties"]["kind"]["enum"] == list(PROPOSABLE_KINDS)
    for kind in PROPOSABLE_KINDS:
        assert kind in PROPOSE_FIX_SPEC.description
    request = proposal_request({"kind": "backfill_from_orders", "since": "2026-11-19T00:00:00Z",
                                "until": "2026-11-20T00:00:00Z", "event_names": [], "reason": "f_1"})
    assert request["kind"] == "backfill_from_orders"
    with pytest.raises(ToolArgumentError, match="kind must be one of"):
        proposal_request({"kind": "manual", "since": "2026-11-19T00:00:00Z", "until": "2026-11-20T00:00:00Z",
                          "event_names": [], "reason": "f_1"})


def test_manual_and_unknown_kinds_are_not_runnable_and_params_are_typed_per_kind() -> None:
    with pytest.raises(UnknownFixKind, match="done by a person"):
        fix_kind("manual")
    with pytest.raises(ValueError):
        parse_params("teleport", {})
    assert parse_params("repair_and_replay", {}).parameter == "fbc"  # the kind's own default
    with pytest.raises(ValueError, match="since must be before until"):
        parse_params("replay", {"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"})
    with pytest.raises(ValueError, match="Purchase"):
        parse_params("backfill_from_orders", {"event_names": ["AddToCart"]})


def _fixes(shop: ShopData) -> dict[str, list[str]]:
    inputs = shop.inputs()
    return {incident.root_cause: [fix.kind for fix in incident.fixes]
            for incident in diagnose(run_checks(inputs), inputs)}


def test_lost_server_purchases_with_orders_propose_a_backfill_from_the_onset() -> None:
    shop = ShopData()
    onset = shop.window_end - 12 * HOUR
    shop.inject_server_down(onset=onset, events=["Purchase"])
    inputs = shop.inputs()
    [incident] = [i for i in diagnose(run_checks(inputs), inputs) if i.root_cause == "server_events_down"]
    backfill = next(fix for fix in incident.fixes if fix.kind == "backfill_from_orders")
    assert backfill.requires_approval  # only proposed: a person approves before anything is sent
    assert backfill.params["event_names"] == ["Purchase"]
    assert backfill.params["until"] == to_iso(inputs.window_end)
    # From the onset the orders witness dated (to the hour or two), not from the start of the history.
    assert abs((parse_iso(backfill.params["since"]) - onset).total_seconds()) <= 3 * 3600
    assert [fix.kind for fix in incident.fixes][-1] == "manual"


def test_no_backfill_without_orders_or_for_other_events() -> None:
    shop = ShopData()
    shop.inject_server_down(onset=shop.window_end - 12 * HOUR, events=["AddToCart"])
    assert "backfill_from_orders" not in _fixes(shop).get("server_events_down", [])
    shop = ShopData()
    shop.inject_server_down(onset=shop.window_end - 12 * HOUR, events=["Purchase"])
    inputs = shop.inputs(has_orders=False, order_hours=())
    kinds = [fix.kind for i in diagnose(run_checks(inputs), inputs) for fix in i.fixes]
    assert "backfill_from_orders" not in kinds
    # A healthy shop proposes nothing at all.
    assert _fixes(ShopData()) == {}

