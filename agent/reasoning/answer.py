"""Parsing and validating the model's diagnosis answer; nothing the model says is taken unchecked."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tools.diagnosis.types import FIX_KINDS, ROOT_CAUSES

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class InvalidAnswer(ValueError):
    """The answer cannot be used; the message is a short reason code-like text (no model text)."""


@dataclass(frozen=True)
class DiagnosisAnswer:
    root_cause: str
    confidence: float
    finding_ids: list[str]
    narrative: str
    fix_kinds: list[str]


def parse_answer(content: str | None, *, known_finding_ids: Collection[str]) -> DiagnosisAnswer:
    """The validated answer: root_cause from the catalogue, confidence in [0, 1], at least one cited
    finding and only known ones, fix kinds from FIX_KINDS. Raises :class:`InvalidAnswer`."""
    data = _json_object(content)
    cause = data.get("root_cause")
    if not isinstance(cause, str) or cause not in ROOT_CAUSES:
        raise InvalidAnswer("unknown_root_cause")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise InvalidAnswer("bad_confidence")
    cited = data.get("finding_ids")
    if not isinstance(cited, list) or not cited or not all(isinstance(x, str) for x in cited):
        raise InvalidAnswer("no_citation")
    if any(x not in known_finding_ids for x in cited):
        raise InvalidAnswer("unknown_finding_id")
    fix_kinds = data.get("fix_kinds", [])
    if not isinstance(fix_kinds, list) or any(k not in FIX_KINDS for k in fix_kinds):
        raise InvalidAnswer("unknown_fix_kind")
    narrative = data.get("narrative")
    if not isinstance(narrative, str) or not narrative.strip():
        raise InvalidAnswer("no_narrative")
    return DiagnosisAnswer(cause, float(confidence), list(dict.fromkeys(cited)), narrative, list(fix_kinds))


def _json_object(content: str | None) -> dict[str, Any]:
    if not content or not content.strip():
        raise InvalidAnswer("empty_answer")
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:  # some servers wrap JSON in a code fence even in JSON mode
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidAnswer("bad_json") from None
    if not isinstance(data, dict):
        raise InvalidAnswer("bad_json")
    return data
