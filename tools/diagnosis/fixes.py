"""Fix suggestions for an incident, with the parameters the fix planner needs.

Replay kinds get ``{"since": ISO, "until": ISO, "event_names": [...], "statuses": [...]}``. Statuses
are the ledger's delivery statuses: ``failed``, ``pending``, and ``never_sent`` for events that were
recorded but never attempted. ``since`` is the start of the run of hours, ending with the audited
window, in which the affected events were left undelivered (never before Meta's 7-day limit).

``backfill_from_orders`` gets ``{"since": ISO, "until": ISO, "event_names": ["Purchase"]}``: from the
onset of the orders' loss of their server Purchases (``lost_purchases_since``) to the audited window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tools.checks.types import AuditInputs
from tools.checks.witness import orders_verdict
from tools.diagnosis.catalogue import cause_info
from tools.diagnosis.types import FixKind, FixSuggestion
from tools.timeutil import HOUR, META_MAX_EVENT_AGE, hours_between, to_iso

FAILED = ["failed", "pending"]
UNSENT = ["never_sent", "pending"]
ANY_UNDELIVERED = ["failed", "pending", "never_sent"]


def undelivered_by_event(inputs: AuditInputs, hours: Sequence[datetime]) -> dict[str, int]:
    """Event name -> undelivered events the ledger holds for those hours."""
    wanted = set(hours)
    out: dict[str, int] = {}
    for row in inputs.event_hours:
        if row.hour in wanted and row.undelivered:
            out[row.event_name] = out.get(row.event_name, 0) + row.undelivered
    return out


def undelivered_since(inputs: AuditInputs, event_names: Sequence[str]) -> datetime:
    """Earliest hour of the unbroken run of hours (up to the window) with undelivered events."""
    names = set(event_names)
    stuck = {r.hour for r in inputs.event_hours
             if r.undelivered and (not names or r.event_name in names)}
    floor = inputs.window_end - META_MAX_EVENT_AGE + HOUR
    since = inputs.window_start
    hour = since - HOUR
    while hour >= max(floor, inputs.history_start) and hour in stuck:
        since = hour
        hour -= HOUR
    return min(since, inputs.window_start)


def lost_purchases_since(inputs: AuditInputs) -> datetime | None:
    """Start of the orders' loss of their server Purchases: the orders witness's onset when it alarms
    (else the audited window), within Meta's 7 days; None when no order of that span lacks a Purchase.
    Not earlier: a shop whose orders never all had a Purchase is not to be topped up from before."""
    verdict = orders_verdict(inputs)
    start = verdict.onset if verdict is not None and verdict.alarm else inputs.window_start
    start = max(start, inputs.window_end - META_MAX_EVENT_AGE + HOUR)
    lost = any(row.orders > row.matched for row in inputs.order_hours
               if start <= row.hour < inputs.window_end)
    return start if lost else None


def replay_params(inputs: AuditInputs, event_names: Sequence[str], statuses: list[str],
                  since: datetime | None = None) -> dict[str, Any]:
    start = undelivered_since(inputs, event_names)
    return {
        "since": to_iso(min(start, since) if since else start),
        "until": to_iso(inputs.window_end),
        "event_names": sorted(event_names),
        "statuses": statuses,
    }


def _manual(cause: str, text: str | None = None) -> FixSuggestion:
    return FixSuggestion(kind="manual", summary=text or cause_info(cause).manual_remedy,
                         requires_approval=False)


def _fix(kind: FixKind, summary: str, params: dict[str, Any]) -> FixSuggestion:
    return FixSuggestion(kind=kind, summary=summary, params=params, requires_approval=True)


def suggest_fixes(
    cause: str, inputs: AuditInputs, event_names: Sequence[str], *, parameter: str = "fbc",
    fields: Sequence[str] = (), since: datetime | None = None,
) -> list[FixSuggestion]:
    """The fixes that apply to ``cause`` for these events (catalogue order: manual step first).

    ``since``: the start of a past gap the findings dated (a replay then reaches back to it)."""
    window = hours_between(since or inputs.window_start, inputs.window_end)
    stuck = undelivered_by_event(inputs, window)
    stuck_names = sorted(n for n in stuck if not event_names or n in event_names) or sorted(stuck)
    names = list(event_names) or stuck_names
    if cause == "access_token_invalid":
        return [_manual(cause),
                _fix("replay", "After the new token is set, resend the events Meta refused.",
                     replay_params(inputs, stuck_names or names, FAILED))]
    if cause == "missed_batch":
        return [_fix("replay", "Send the recorded events that were never sent.",
                     replay_params(inputs, stuck_names or names, UNSENT, since))]
    if cause == "rate_limited":
        return [_fix("replay", "Once the rate limit clears, resend the events that failed.",
                     replay_params(inputs, stuck_names or names, FAILED))]
    if cause == "late_delivery":
        fixes = [_manual(cause)]
        if stuck_names:
            fixes.append(_fix("replay", "Send the events still waiting in the queue now.",
                              replay_params(inputs, stuck_names, ["pending"])))
        return fixes
    if cause == "server_events_down":
        held = [n for n in names if stuck.get(n)]
        fixes = []
        if held:
            fixes.append(_fix("replay", "Send the server events the ledger still holds undelivered.",
                              replay_params(inputs, held, ANY_UNDELIVERED)))
        # Purchases that never reached the ledger cannot be replayed; the shop's orders still tell them.
        lost_since = lost_purchases_since(inputs) if inputs.has_orders and (
            not event_names or "Purchase" in event_names) else None
        if lost_since is not None:
            fixes.append(_fix("backfill_from_orders", "Rebuild the lost Purchases from the shop's orders that "
                                                      "have none (each order once, its id as event_id).",
                              {"since": to_iso(lost_since), "until": to_iso(inputs.window_end),
                               "event_names": ["Purchase"]}))
        return [*fixes, _manual(cause)]
    if cause == "malformed_parameter":
        params = {**replay_params(inputs, stuck_names or names, ["failed"]), "parameter": parameter}
        return [_fix("repair_and_replay",
                     f"Drop or repair the malformed '{parameter}' and resend the rejected batches.", params)]
    if cause == "hashing_error":
        return [_fix("rehash", "Switch the relay to repair mode: normalize and hash customer data "
                               "before it is sent.",
                     {"event_names": sorted(names), "fields": sorted(fields)})]
    if cause == "none":
        return []
    return [_manual(cause)]
