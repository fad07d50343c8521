"""Fix proposals: preview numbers, decisions (approve, reject, expired, twice, edited), trail, verify."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from tests.fixtures.db import PIXEL
from tests.integration.test_fixes_support import AT, approved, failed, purge, seed
from tools.checks.types import Finding
from tools.diagnosis.types import Incident
from tools.fixes.planner import decide, expire_proposals, get_proposal, list_proposals, propose_fix
from tools.fixes.preview import build_preview
from tools.fixes.trail import trail
from tools.fixes.types import ProposalAlreadyDecided, ProposalExpired, ProposalNotFound
from tools.fixes.verify import verify_fix
from tools.ledger.store import DeliveryOutcome

WINDOW = {"since": "2026-11-10T00:00:00Z", "until": "2026-11-20T12:00:00Z"}
H1 = AT - timedelta(hours=5)
H2 = AT - timedelta(hours=2)


def _seed_mixed(engine: Engine) -> None:
    seed(engine, 30, event_time=H1, name="Purchase", prefix="p")
    seed(engine, 20, event_time=H2, name="AddToCart", prefix="a", delivery=failed(190, 463))
    seed(engine, 10, event_time=H2, name="Purchase", prefix="d", delivery=DeliveryOutcome(
        status="delivered", attempted_at=H2, http_status=200, events_received=1))
    seed(engine, 5, event_time=AT - timedelta(days=8), name="Purchase", prefix="old")
    purge(engine, seed(engine, 3, event_time=H2, name="Purchase", prefix="purged"))


def test_preview_counts_events_by_name_and_hour_and_reports_skips(ledger_engine: Engine) -> None:
    _seed_mixed(ledger_engine)
    with Session(ledger_engine) as session:
        preview = build_preview(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT)
    assert preview.total_events == 50
    assert preview.requests == 1
    hours = {(row.event_name, row.hour): row.count for row in preview.by_event_hour}
    assert hours == {("Purchase", H1): 30, ("AddToCart", H2): 20}
    assert {s.reason: s.count for s in preview.skipped} == {"already_delivered": 10, "too_old": 5,
                                                            "no_payload": 3}


def test_preview_filters_event_names_and_statuses(ledger_engine: Engine) -> None:
    _seed_mixed(ledger_engine)
    with Session(ledger_engine) as session:
        preview = build_preview(session, pixel_id=PIXEL, kind="replay", at=AT,
                                params={**WINDOW, "event_names": ["AddToCart"], "statuses": ["failed"]})
    assert preview.total_events == 20
    assert [(r.event_name, r.count) for r in preview.by_event_hour] == [("AddToCart", 20)]


def test_preview_chunks_at_most_1000_a_request(ledger_engine: Engine) -> None:
    seed(ledger_engine, 2500, event_time=H1)
    with Session(ledger_engine) as session:
        preview = build_preview(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT)
    assert (preview.total_events, preview.requests) == (2500, 3)


def test_approve_exactly_once_and_trail(ledger_engine: Engine) -> None:
    seed(ledger_engine, 3, event_time=H1)
    proposal_id = approved(ledger_engine, params=WINDOW)
    with Session(ledger_engine) as session:
        proposal = get_proposal(session, proposal_id)
        assert proposal is not None and proposal.status == "approved"
        assert proposal.decided_by == "U123" and proposal.decided_at == AT
        with pytest.raises(ProposalAlreadyDecided):
            decide(session, proposal_id=proposal_id, actor="U999", decision="reject", at=AT)
        assert get_proposal(session, proposal_id).status == "approved"  # type: ignore[union-attr]
        actions = [(e.actor, e.action) for e in trail(session, proposal_id)]
    assert actions == [("agent", "proposed"), ("U123", "approved")]


def test_reject_and_then_approve_is_refused(ledger_engine: Engine) -> None:
    seed(ledger_engine, 3, event_time=H1)
    with Session(ledger_engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT)
        rejected = decide(session, proposal_id=proposal.id, actor="U1", decision="reject", at=AT)
        assert rejected.status == "rejected"
        with pytest.raises(ProposalAlreadyDecided):
            decide(session, proposal_id=proposal.id, actor="U1", decision="approve", at=AT)
        with pytest.raises(ProposalNotFound):
            decide(session, proposal_id="fix_nope", actor="U1", decision="approve", at=AT)


def test_expired_proposal_cannot_be_approved(ledger_engine: Engine) -> None:
    seed(ledger_engine, 3, event_time=H1)
    with Session(ledger_engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT,
                               ttl=timedelta(hours=1))
        with pytest.raises(ProposalExpired):
            decide(session, proposal_id=proposal.id, actor="U1", decision="approve",
                   at=AT + timedelta(hours=2))
    with Session(ledger_engine) as session:  # the expiry was committed, not rolled back
        assert get_proposal(session, proposal.id).status == "expired"  # type: ignore[union-attr]
        other = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT,
                            ttl=timedelta(hours=1))
        assert expire_proposals(session, at=AT + timedelta(hours=1)) == [other.id]
        assert {p.id for p in list_proposals(session, pixel_id=PIXEL, status="expired")} \
            == {proposal.id, other.id}


def test_edit_before_approval_recomputes_the_preview(ledger_engine: Engine) -> None:
    seed(ledger_engine, 30, event_time=H1, prefix="p")
    seed(ledger_engine, 20, event_time=H2, prefix="q")
    with Session(ledger_engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT)
        assert proposal.preview.total_events == 50
        edited = decide(session, proposal_id=proposal.id, actor="U1", decision="approve", at=AT,
                        edit_params={"since": "2026-11-20T09:00:00Z"})
        assert edited.status == "approved"
        assert edited.preview.total_events == 20
        assert edited.params["since"] == "2026-11-20T09:00:00Z"
        assert "edited" in [e.action for e in trail(session, proposal.id)]


def test_same_incident_is_not_proposed_twice_while_open(ledger_engine: Engine) -> None:
    seed(ledger_engine, 3, event_time=H1)
    incident = Incident(id="inc-1", pixel_id=PIXEL, root_cause="missed_batch", confidence=0.9,
                        severity="critical", summary="no server events", fingerprint="fp1")
    with Session(ledger_engine) as session:
        first = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW, at=AT, incident=incident)
        again = propose_fix(session, pixel_id=PIXEL, kind="replay", params=WINDOW,
                            at=AT + timedelta(hours=1), incident=incident)
        assert again.id == first.id and first.incident_id == "inc-1"
        assert len(list_proposals(session, pixel_id=PIXEL)) == 1


def test_manual_fixes_and_bad_windows_are_refused(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        with pytest.raises(ValueError):
            propose_fix(session, pixel_id=PIXEL, kind="manual", params={}, at=AT)
        with pytest.raises(ValueError):
            propose_fix(session, pixel_id=PIXEL, kind="replay", at=AT,
                        params={"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"})


def _finding(code: str) -> Finding:
    return Finding(id=f"f-{code}", pixel_id=PIXEL, check="delivery", code=code, severity="critical",
                   summary=code, window_start=AT - timedelta(hours=1), window_end=AT,
                   fingerprint=f"fp-{code}")


def test_verify_reports_the_difference(ledger_engine: Engine) -> None:
    seed(ledger_engine, 3, event_time=H1)
    proposal_id = approved(ledger_engine, params=WINDOW)
    before = [_finding("delivery.rejected")]
    with Session(ledger_engine) as session:
        still = verify_fix(session, proposal_id=proposal_id, rerun=lambda: before, before=before, at=AT)
        assert not still.resolved and "still present" in still.summary
        fixed = verify_fix(session, proposal_id=proposal_id, rerun=lambda: [], before=before, at=AT)
        assert fixed.resolved and fixed.before["findings"] == 1 and fixed.after["findings"] == 0
        stored = get_proposal(session, proposal_id)
        assert stored is not None and stored.verification == fixed
        assert [e.action for e in trail(session, proposal_id)][-1] == "verified"
