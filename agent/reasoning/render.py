"""Domain data rendered as compact JSON or text for prompts (data blocks, never instructions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tools.checks.types import SEVERITY_RANK, Finding
from tools.diagnosis.catalogue import CATALOGUE
from tools.diagnosis.types import FIX_KINDS, Incident

# Enough for every finding of a bad hour; an audit with more is summarised by its worst ones.
MAX_PROMPT_FINDINGS = 40
MAX_EVIDENCE_LINES = 5


def to_json(value: Any) -> str:
    """Compact JSON (datetimes and other objects as strings). Angle brackets are escaped so that
    data (an event name holding "</findings>") cannot close the block that wraps it in a prompt."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def catalogue_text() -> str:
    """The root-cause catalogue, one line a cause: code, title, meaning, evidence, fix kinds."""
    lines = []
    for code, info in CATALOGUE.items():
        evidence = "; ".join(info.typical_evidence) or "-"
        fixes = ", ".join(info.fix_kinds) or "-"
        lines.append(f"- {code}: {info.title}. {info.description} Evidence: {evidence}. Fixes: {fixes}.")
    return "\n".join(lines)


def fix_kinds_text() -> str:
    return ", ".join(FIX_KINDS)


def finding_brief(finding: Finding) -> dict[str, Any]:
    """What the model needs of a finding (no fingerprint, bounded evidence)."""
    return {
        "id": finding.id,
        "check": finding.check,
        "code": finding.code,
        "event_name": finding.event_name,
        "severity": finding.severity,
        "summary": finding.summary,
        "metrics": finding.metrics,
        "evidence": finding.evidence[:MAX_EVIDENCE_LINES],
    }


def findings_for_prompt(findings: Sequence[Finding], first_ids: Sequence[str] = ()) -> list[Finding]:
    """The findings to show: those in ``first_ids`` first, then the most severe, at most
    MAX_PROMPT_FINDINGS."""
    wanted = set(first_ids)
    ordered = sorted(findings, key=lambda f: (f.id not in wanted, -SEVERITY_RANK[f.severity], f.code))
    return ordered[:MAX_PROMPT_FINDINGS]


def incident_brief(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "root_cause": incident.root_cause,
        "confidence": incident.confidence,
        "severity": incident.severity,
        "event_names": incident.event_names,
        "finding_ids": incident.finding_ids,
        "summary": incident.summary,
        "fix_kinds": [fix.kind for fix in incident.fixes],
        # Sender changes shortly before the onset (the change that may have broken it).
        **({"sender_changes": incident.changes} if incident.changes else {}),
    }
