"""Chat answers with no LLM: a few intents recognised by keywords, answered from the context."""

from __future__ import annotations

import re
from typing import Literal

from agent.reasoning.context import ChatContext, proposal_brief, recent_changes, status_word
from tools.diagnosis.catalogue import cause_info

Intent = Literal["help", "fix", "changes", "why", "status"]

_KEYWORDS: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("help", re.compile(r"\b(help|what can you|how do i use|commands?)\b", re.IGNORECASE)),
    ("fix", re.compile(r"\b(fix(es)?|replay|repair|rehash|approve|proposals?|resend)\b", re.IGNORECASE)),
    ("changes", re.compile(r"\b(what|which|anything|any)\b.*\b(chang(e|ed|es)|updated?|upgraded?)\b|"
                           r"\b(plugin|sdk|sender|version)s?\b", re.IGNORECASE)),
    ("why", re.compile(r"\b(why|cause|what happened|explain|broke|broken|wrong|reason)\b", re.IGNORECASE)),
)
HELP_TEXT = (
    "I watch this pixel's Conversions API traffic and audit it every hour. Ask me:\n"
    "• *status* - is tracking healthy right now?\n"
    "• *why* - what broke, since when, and the evidence\n"
    "• *fix* - the fixes proposed and waiting for approval\n"
    "• *what changed yesterday?* - plugin/SDK versions, fields and match keys the sender changed\n"
    "Fixes only run after an approver clicks Approve."
)


def intent_of(question: str) -> Intent:
    """The first intent whose keywords appear in ``question`` (``status`` by default)."""
    for intent, pattern in _KEYWORDS:
        if pattern.search(question):
            return intent
    return "status"


def offline_answer(question: str, context: ChatContext) -> str:
    """A deterministic answer to ``question`` from ``context``."""
    intent = intent_of(question)
    if intent == "help":
        return HELP_TEXT
    if intent == "fix":
        return _fixes(context)
    if intent == "changes":
        return _changes(question, context)
    if intent == "why":
        return _why(context)
    return _status(context)


def _pixel(context: ChatContext) -> str:
    return f"Pixel {context.pixel_id}" if context.pixel_id else "This pixel"


def _status(context: ChatContext) -> str:
    word = status_word(context)
    if word == "no_audit":
        return f"{_pixel(context)} has not been audited yet."
    window = ""
    if context.inputs is not None:
        start, end = context.inputs.window_start, context.inputs.window_end
        window = f" (audit of {start:%Y-%m-%d %H:%M}-{end:%H:%M} UTC)"
    if word == "healthy":
        return f"{_pixel(context)} looks healthy{window}: no open incident."
    lines = [f"{_pixel(context)} has {len(context.incidents)} open incident(s){window}:"]
    for incident in context.incidents:
        lines.append(f"• [{incident.severity}] {cause_info(incident.root_cause).title}"
                     f" ({', '.join(incident.event_names) or 'all events'}) - {incident.id}")
    if context.proposals:
        lines.append(f"{len(context.proposals)} fix proposal(s) wait for approval.")
    return "\n".join(lines)


def _why(context: ChatContext) -> str:
    if not context.incidents:
        return _status(context)
    lines = []
    for incident in context.incidents:
        lines.append(f"*{cause_info(incident.root_cause).title}* ({incident.id}, confidence "
                     f"{incident.confidence:.0%}): {context.narrative_of(incident)}")
    return "\n\n".join(lines)


def _fixes(context: ChatContext) -> str:
    lines: list[str] = []
    if context.proposals:
        lines.append("Fix proposals waiting for approval:")
        for proposal in context.proposals:
            brief = proposal_brief(proposal)
            lines.append(f"• {brief.get('kind', 'fix')} {brief.get('id', '')}: "
                         f"{brief.get('summary') or brief.get('reason') or ''}".rstrip(": "))
    suggested = [(i, f) for i in context.incidents for f in i.fixes]
    if suggested:
        lines.append("Suggested for the open incidents:")
        for incident, fix in suggested:
            step = "needs approval" if fix.requires_approval else "manual step"
            lines.append(f"• {cause_info(incident.root_cause).title}: {fix.summary} ({step})")
    if not lines:
        return f"{_pixel(context)} has nothing to fix right now."
    return "\n".join(lines)


def _changes(question: str, context: ChatContext) -> str:
    """What changed in the sender: over a day when the question says today/yesterday, else a week."""
    if context.inputs is None:
        return f"{_pixel(context)} has not been audited yet."
    hours = 48 if re.search(r"\b(today|yesterday|last night|this morning)\b", question, re.IGNORECASE) else 7 * 24
    changes = recent_changes(context, hours)
    span = "two days" if hours == 48 else "week"
    if not changes:
        return (f"{_pixel(context)}: no change of sender seen over the last {span} (same plugin/SDK versions, "
                "fields and match keys).")
    lines = [f"{_pixel(context)}: what changed in the sender over the last {span}:"]
    for change in changes:
        lines.append(f"• {change.at:%Y-%m-%d %H:%M} UTC: {change.describe()}")
    named = [i for i in context.incidents if i.changes]
    for incident in named:
        lines.append(f"_{cause_info(incident.root_cause).title} ({incident.id}) began shortly after it._")
    return "\n".join(lines)
