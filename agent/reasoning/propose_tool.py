"""The chat's one non-read tool: ``propose_fix`` creates a proposal that still needs a person's
approval. It never executes anything; the injected ``propose`` callable owns the proposal store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.llm import ToolSpec
from agent.reasoning.toolbox import ToolArgumentError
from tools.fixes.registry import all_kinds
from tools.timeutil import parse_iso, to_iso

Propose = Callable[[dict[str, Any]], dict[str, Any]]
# From the fix registry: every runnable kind whose parameters fit this tool's arguments.
PROPOSABLE_KINDS: tuple[str, ...] = tuple(kind.name for kind in all_kinds() if kind.proposable_in_chat)
MAX_REASON_CHARS = 500

PROPOSE_FIX_SPEC = ToolSpec(
    "propose_fix",
    "Propose a fix for a person to approve in Slack (it does not run until approved). kind: "
    + "; ".join(kind.summary for kind in all_kinds() if kind.proposable_in_chat)
    + ". since/until: ISO-8601 UTC bounds of the events concerned.",
    {"type": "object", "additionalProperties": False,
     "required": ["kind", "since", "until", "event_names", "reason"],
     "properties": {
         "kind": {"type": "string", "enum": list(PROPOSABLE_KINDS)},
         "since": {"type": "string", "description": "ISO-8601 UTC, e.g. 2026-11-24T12:00:00Z"},
         "until": {"type": "string", "description": "ISO-8601 UTC"},
         "event_names": {"type": "array", "items": {"type": "string"}},
         "reason": {"type": "string", "description": "Why, citing finding or incident ids"},
     }},
)


def proposal_request(args: dict[str, Any]) -> dict[str, Any]:
    """The validated request handed to ``propose``. Raises ToolArgumentError."""
    kind = args.get("kind")
    if kind not in PROPOSABLE_KINDS:
        raise ToolArgumentError(f"kind must be one of: {', '.join(PROPOSABLE_KINDS)}")
    try:
        since, until = parse_iso(str(args.get("since", ""))), parse_iso(str(args.get("until", "")))
    except ValueError:
        raise ToolArgumentError("since and until must be ISO-8601 timestamps") from None
    if since >= until:
        raise ToolArgumentError("since must be before until")
    names = args.get("event_names")
    if not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        raise ToolArgumentError("event_names must be a list of event names")
    reason = args.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ToolArgumentError("reason is required")
    return {"kind": kind, "since": to_iso(since), "until": to_iso(until),
            "event_names": sorted(set(names)), "reason": reason.strip()[:MAX_REASON_CHARS]}


def propose_fix_handler(propose: Propose | None, created: list[dict[str, Any]]
                        ) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A toolbox handler calling ``propose``; each created proposal is appended to ``created``."""

    def handle(args: dict[str, Any]) -> dict[str, Any]:
        if propose is None:
            return {"error": "fix proposals cannot be created from this conversation"}
        request = proposal_request(args)
        try:
            proposal = propose(request)
        except ValueError as exc:  # the planner refusing (e.g. nothing to replay) is for the model to read
            return {"error": f"proposal refused: {str(exc)[:300]}"}
        created.append(proposal)
        return {"proposal": proposal, "note": "created; it runs only after a person approves it in Slack"}

    return handle
