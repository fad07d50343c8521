"""Proposals: a fix is planned and previewed, stored with a trail entry, then approved or rejected
exactly once by a person before anything runs.

These functions complete one business action each and commit the session they are given (a decision
and its trail entry, or an expiry, must be durable even when the caller goes on to raise).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.diagnosis.types import Incident
from tools.fixes.models import FixProposalRow
from tools.fixes.preview import build_preview, parse_params
from tools.fixes.trail import record
from tools.fixes.types import (
    OPEN_STATUSES,
    Decision,
    ExecutionResult,
    FixPreview,
    FixProposal,
    ProposalAlreadyDecided,
    ProposalExpired,
    ProposalNotFound,
    Verification,
)
from tools.ledger.db import rowcount
from tools.timeutil import as_utc, to_iso

DEFAULT_TTL = timedelta(hours=72)


def to_proposal(row: FixProposalRow) -> FixProposal:
    return FixProposal(
        id=row.id, pixel_id=row.pixel_id, incident_id=row.incident_id,
        incident_fingerprint=row.incident_fingerprint, kind=row.kind,
        params=dict(row.params or {}), preview=FixPreview.model_validate(row.preview),
        status=row.status,  # type: ignore[arg-type]
        created_at=as_utc(row.created_at), expires_at=as_utc(row.expires_at), created_by=row.created_by,
        decided_by=row.decided_by, decided_at=as_utc(row.decided_at) if row.decided_at else None,
        result=ExecutionResult.model_validate(row.result) if row.result else None,
        verification=Verification.model_validate(row.verification) if row.verification else None,
    )


def _preview_summary(preview: FixPreview) -> dict[str, Any]:
    return {"total_events": preview.total_events, "requests": preview.requests,
            "skipped": {s.reason: s.count for s in preview.skipped}}


def propose_fix(session: Session, *, pixel_id: str, kind: str, params: dict[str, Any], at: datetime,
                incident: Incident | None = None, created_by: str = "agent",
                ttl: timedelta = DEFAULT_TTL) -> FixProposal:
    """Store a previewed proposal (status ``proposed``) and its trail entry; commits.

    An open proposal (proposed, approved or executing) of the same kind for the same incident
    fingerprint is returned as it is instead of a second one, so hourly audits do not pile them up.
    """
    parsed = parse_params(kind, params)
    if incident is not None:
        existing = session.scalars(select(FixProposalRow).where(
            col(FixProposalRow.pixel_id) == pixel_id, col(FixProposalRow.kind) == kind,
            col(FixProposalRow.incident_fingerprint) == incident.fingerprint,
            col(FixProposalRow.status).in_(OPEN_STATUSES))).first()
        if existing is not None and as_utc(existing.expires_at) > as_utc(at):
            return to_proposal(existing)
    clean_params = parsed.model_dump(exclude_none=True)
    preview = build_preview(session, pixel_id=pixel_id, kind=kind, params=clean_params, at=at)
    row = FixProposalRow(
        id="fix_" + uuid.uuid4().hex[:20], pixel_id=pixel_id,
        incident_id=incident.id if incident else None,
        incident_fingerprint=incident.fingerprint if incident else None,
        kind=kind, status="proposed", params=clean_params, preview=preview.model_dump(mode="json"),
        created_at=as_utc(at), expires_at=as_utc(at) + ttl, created_by=created_by)
    session.add(row)
    session.flush()
    record(session, proposal_id=row.id, actor=created_by, action="proposed", at=at,
           detail={"kind": kind, "params": clean_params, "preview": _preview_summary(preview),
                   "incident_id": row.incident_id})
    session.commit()
    return to_proposal(row)


def get_proposal(session: Session, proposal_id: str) -> FixProposal | None:
    row = session.get(FixProposalRow, proposal_id)
    return to_proposal(row) if row is not None else None


def list_proposals(session: Session, *, pixel_id: str | None = None,
                   status: str | None = None) -> list[FixProposal]:
    """Proposals, newest first, optionally of one pixel and/or one status."""
    query = select(FixProposalRow).order_by(col(FixProposalRow.created_at).desc(), col(FixProposalRow.id))
    if pixel_id is not None:
        query = query.where(col(FixProposalRow.pixel_id) == pixel_id)
    if status is not None:
        query = query.where(col(FixProposalRow.status) == status)
    return [to_proposal(row) for row in session.scalars(query)]


def expire_proposals(session: Session, *, at: datetime, actor: str = "agent") -> list[str]:
    """Mark undecided proposals past their expiry as ``expired``; returns their ids. Commits."""
    rows = session.scalars(select(FixProposalRow).where(
        col(FixProposalRow.status) == "proposed", col(FixProposalRow.expires_at) <= as_utc(at))).all()
    expired = []
    for row in rows:
        # Conditional update: of two replicas expiring at once, only one writes the trail entry.
        changed = session.execute(update(FixProposalRow).where(
            col(FixProposalRow.id) == row.id, col(FixProposalRow.status) == "proposed").values(status="expired"))
        if rowcount(changed):
            record(session, proposal_id=row.id, actor=actor, action="expired", at=at,
                   detail={"expires_at": to_iso(row.expires_at)})
            expired.append(row.id)
    session.commit()
    return expired


def decide(session: Session, *, proposal_id: str, actor: str, decision: Decision, at: datetime,
           edit_params: dict[str, Any] | None = None) -> FixProposal:
    """Approve or reject a proposal, exactly once; commits.

    Raises ``ProposalNotFound``; ``ProposalExpired`` (the proposal is marked expired, durably) when
    ``at`` is past its expiry; ``ProposalAlreadyDecided`` when it was already decided (also when two
    people click at the same moment: the status changes atomically). ``edit_params`` (e.g. a narrower
    window) are merged into the parameters and the preview is recomputed before the approval.
    """
    row = session.get(FixProposalRow, proposal_id)
    if row is None:
        raise ProposalNotFound(f"no fix proposal {proposal_id}")
    if row.status != "proposed":
        raise ProposalAlreadyDecided(f"proposal {proposal_id} is already {row.status}"
                                     + (f" (by {row.decided_by})" if row.decided_by else ""))
    if as_utc(at) >= as_utc(row.expires_at):
        row.status = "expired"
        record(session, proposal_id=proposal_id, actor=actor, action="expired", at=at,
               detail={"expires_at": to_iso(row.expires_at), "attempted": decision})
        session.commit()
        raise ProposalExpired(f"proposal {proposal_id} expired at {to_iso(row.expires_at)}; "
                              "ask for a new one")
    values: dict[str, Any] = {"status": "approved" if decision == "approve" else "rejected",
                              "decided_by": actor, "decided_at": as_utc(at)}
    if edit_params and decision == "approve":
        merged = parse_params(row.kind, {**row.params, **edit_params}).model_dump(exclude_none=True)
        preview = build_preview(session, pixel_id=row.pixel_id, kind=row.kind, params=merged, at=at)
        values.update(params=merged, preview=preview.model_dump(mode="json"))
        record(session, proposal_id=proposal_id, actor=actor, action="edited", at=at,
               detail={"before": dict(row.params), "after": merged, "preview": _preview_summary(preview)})
    # Conditional update: of two concurrent decisions only one finds the proposal still proposed.
    done = session.execute(update(FixProposalRow).where(
        col(FixProposalRow.id) == proposal_id, col(FixProposalRow.status) == "proposed").values(**values),
        execution_options={"synchronize_session": False})
    if rowcount(done) != 1:
        session.rollback()
        raise ProposalAlreadyDecided(f"proposal {proposal_id} was decided by someone else")
    record(session, proposal_id=proposal_id, actor=actor,
           action="approved" if decision == "approve" else "rejected", at=at,
           detail={"params": values.get("params", dict(row.params))})
    session.commit()
    session.refresh(row)
    return to_proposal(row)
