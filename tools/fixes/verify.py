"""Verifying a fix: re-run the check that raised the incident and report the difference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tools.checks.types import Finding
from tools.fixes.models import FixProposalRow
from tools.fixes.trail import record
from tools.fixes.types import ProposalNotFound, Verification


def _digest(findings: Sequence[Finding]) -> dict[str, Any]:
    return {"findings": len(findings),
            "codes": sorted({f"{f.code}:{f.event_name or '*'}" for f in findings}),
            "critical": sum(f.severity == "critical" for f in findings),
            "fingerprints": sorted({f.fingerprint for f in findings})}


def verify_fix(session: Session, *, proposal_id: str, rerun: Callable[[], Sequence[Finding]],
               before: Sequence[Finding], at: datetime, actor: str = "agent") -> Verification:
    """Compare the findings that raised the incident (``before``) with a re-run of their check.

    ``resolved`` means none of the ``before`` problems (by fingerprint) is still reported. The result
    is stored on the proposal and in the trail; commits.
    """
    row = session.get(FixProposalRow, proposal_id)
    if row is None:
        raise ProposalNotFound(f"no fix proposal {proposal_id}")
    after = list(rerun())
    old, new = _digest(before), _digest(after)
    remaining = set(old["fingerprints"]) & set(new["fingerprints"])
    appeared = set(new["fingerprints"]) - set(old["fingerprints"])
    checks: list[str] = sorted({f.check for f in before} | {f.check for f in after}) or ["none"]
    resolved = not remaining
    summary = (f"{len(before)} finding(s) before, {len(after)} after: "
               + ("resolved" if resolved else f"{len(remaining)} still present")
               + (f", {len(appeared)} new" if appeared else ""))
    verification = Verification(check=",".join(checks), before=old, after=new, resolved=resolved,
                                summary=summary)
    row.verification = verification.model_dump(mode="json")
    record(session, proposal_id=proposal_id, actor=actor, action="verified", at=at,
           detail={"resolved": resolved, "summary": summary})
    session.commit()
    return verification
