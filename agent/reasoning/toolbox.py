"""Read-only tools the model may call to drill into one audit, listed in one registry.

Each handler is a thin adapter over data already in hand (the audit's ``AuditInputs``, findings and
incidents): no I/O, nothing that could change anything. Handlers validate their arguments and
answer compact JSON; a bad argument gets ``{"error": ...}`` the model can read and correct.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.llm import ToolSpec
from agent.reasoning import series
from agent.reasoning.render import finding_brief, incident_brief, to_json
from tools.checks.types import AuditInputs, Finding
from tools.diagnosis.types import Incident
from tools.timeutil import HOUR, to_iso

# A tool answer stays well under the adapter's own cut so the model always sees whole JSON.
MAX_RESULT_CHARS = 6000
MAX_HOURS = 168

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ToolArgumentError(ValueError):
    """An argument the model sent is missing, of the wrong type or out of range."""


@dataclass
class Toolbox:
    """The tools of one run: ``specs`` to offer the model and ``execute`` to answer its calls."""

    inputs: AuditInputs | None
    findings: list[Finding]
    incidents: list[Incident]
    specs: list[ToolSpec] = field(default_factory=list)
    handlers: dict[str, Handler] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def with_tool(self, spec: ToolSpec, handler: Handler) -> Toolbox:
        """A copy of this toolbox with one more tool (the chat adds ``propose_fix``)."""
        return Toolbox(self.inputs, self.findings, self.incidents, [*self.specs, spec],
                       {**self.handlers, spec.name: handler})

    def execute(self, name: str, args: dict[str, Any]) -> str:
        """Runs tool ``name``; returns bounded JSON text, ``{"error": ...}`` for bad calls."""
        handler = self.handlers.get(name)
        if handler is None:
            return _dump({"error": f"unknown tool {name!r}; available: {', '.join(self.names)}"})
        spec = next(s for s in self.specs if s.name == name)
        try:
            _reject_unknown(args, spec)
            return _dump(handler(args))
        except ToolArgumentError as exc:
            return _dump({"error": str(exc)})


def _schema(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


HOURS_PROP = {"type": "integer", "minimum": 1, "maximum": MAX_HOURS,
              "description": "How many hours back from the end of the audited window"}
EVENT_PROP = {"type": "string", "description": "Event name exactly as in the findings, e.g. Purchase"}

SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec("hourly_counts", "Hourly event counts of one event from one source: browser or server "
             "(as Meta counted them) or ledger (what capi-agent recorded), with the usual count for "
             "that hour of the week.",
             _schema({"event_name": EVENT_PROP,
                      "source": {"type": "string", "enum": ["browser", "server", "ledger"]},
                      "hours": {**HOURS_PROP, "default": 24}}, ["event_name", "source"])),
    ToolSpec("match_key_coverage", "Share of server events carrying one match key, per hour, from the "
             "ledger. Keys use Meta's user_data names: em, ph, fn, ln, external_id, client_ip_address, "
             "client_user_agent, fbc, fbp, ...",
             _schema({"key": {"type": "string"}, "event_name": EVENT_PROP,
                      "hours": {**HOURS_PROP, "default": 48}}, ["key"])),
    ToolSpec("delivery_errors", "Delivery attempts to Meta per hour: attempts, failures by "
             "'code/subcode', retries, transport errors.",
             _schema({"hours": {**HOURS_PROP, "default": 24}})),
    ToolSpec("hashing_flags", "Counts of badly hashed customer data per field over the last hours: raw "
             "values, placeholder hashes, upper-case hex, not SHA-256, must-not-hash fields hashed, "
             "malformed fbc/fbp, and the share of the most frequent hash.",
             _schema({"event_name": EVENT_PROP, "hours": {**HOURS_PROP, "default": 24}})),
    ToolSpec("dataset_quality", "Meta's latest Dataset Quality snapshot: EMQ, match-key coverage, event "
             "coverage, dedupe-key feedback and data freshness per event.",
             _schema({"event_name": EVENT_PROP})),
    ToolSpec("finding_detail", "One finding of this audit in full: metrics and evidence.",
             _schema({"finding_id": {"type": "string"}}, ["finding_id"])),
    ToolSpec("list_incidents", "The incidents of this audit: id, root cause, events, severity.",
             _schema({})),
    ToolSpec("sender_changes", "Changes of who sends the pixel's server events over the last hours "
             "(up to 7 days): a plugin or SDK version, a new sender taking over, the fields or match keys "
             "an event carries, a new event name; each with its time, before and after. Answers 'what "
             "changed yesterday?'.",
             _schema({"hours": {**HOURS_PROP, "default": 48}})),
)}


def build_toolbox(inputs: AuditInputs | None, findings: Sequence[Finding],
                  incidents: Sequence[Incident]) -> Toolbox:
    """The read-only toolbox over one audit's data. With no ``inputs`` (no audit yet) only the
    finding and incident tools are offered."""
    box = Toolbox(inputs, list(findings), list(incidents))
    handlers: dict[str, Handler] = {
        "finding_detail": lambda a: _finding_detail(box, a),
        "list_incidents": lambda a: {"incidents": [incident_brief(i) for i in box.incidents]},
    }
    if inputs is not None:
        handlers |= {
            "hourly_counts": lambda a: _hourly_counts(inputs, a),
            "match_key_coverage": lambda a: _match_key_coverage(inputs, a),
            "delivery_errors": lambda a: _delivery_errors(inputs, a),
            "hashing_flags": lambda a: _hashing_flags(inputs, a),
            "dataset_quality": lambda a: _dataset_quality(inputs, a),
            "sender_changes": lambda a: sender_changes(inputs, a),
        }
    box.specs = [spec for name, spec in SPECS.items() if name in handlers]
    box.handlers = handlers
    return box


# --- argument checks ---------------------------------------------------------------------------

def _reject_unknown(args: dict[str, Any], spec: ToolSpec) -> None:
    allowed = set(spec.parameters.get("properties", {}))
    extra = sorted(set(args) - allowed)
    if extra:
        raise ToolArgumentError(f"unexpected argument(s): {', '.join(extra)}; "
                                f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def _hours(args: dict[str, Any], default: int) -> int:
    value = args.get("hours", default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ToolArgumentError("hours must be a whole number")
    if not 1 <= value <= MAX_HOURS:
        raise ToolArgumentError(f"hours must be between 1 and {MAX_HOURS}")
    return int(value)


def _text(args: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        if required:
            raise ToolArgumentError(f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise ToolArgumentError(f"{name} must be a string of at most 200 characters")
    return value


def _event(inputs: AuditInputs, args: dict[str, Any], *, required: bool) -> str | None:
    name = _text(args, "event_name", required=required)
    known = series.event_names(inputs)
    if name is not None and name not in known:
        raise ToolArgumentError(f"unknown event_name; known: {', '.join(sorted(known)[:30])}")
    return name


def _span(inputs: AuditInputs, hours: int) -> tuple[datetime, datetime]:
    return inputs.window_end - hours * HOUR, inputs.window_end


# --- handlers ----------------------------------------------------------------------------------

def _read_errors(inputs: AuditInputs) -> str:
    """Why Meta's side is missing, as the kinds of the failed reads (or "not read")."""
    return ", ".join(sorted({e.kind for e in inputs.meta_read_errors})) or "not read"


def _hourly_counts(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    event = _event(inputs, args, required=True)
    source = _text(args, "source", required=True)
    if source not in ("browser", "server", "ledger"):
        raise ToolArgumentError("source must be one of: browser, server, ledger")
    hours = _hours(args, 24)
    if source != "ledger" and inputs.meta_counts is None:
        return {"error": f"Meta stats are not available for this audit ({_read_errors(inputs)}); "
                         "use source=ledger"}
    counts = series.counts(inputs, event or "", source)
    start, end = _span(inputs, hours)
    rows = [{"hour": to_iso(h), "count": counts.get(h, 0),
             "usual": series.usual(counts, h, inputs.history_start)}
            for h in series.hours(start, end)]
    return {"event_name": event, "source": source, "total": sum(r["count"] for r in rows), "hours": rows}


def _match_key_coverage(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    key = _text(args, "key", required=True)
    if key not in series.MATCH_KEYS:
        raise ToolArgumentError(f"unknown key; use one of: {', '.join(series.MATCH_KEYS)}")
    event = _event(inputs, args, required=False)
    start, end = _span(inputs, _hours(args, 48))
    rows = []
    for hour, events, with_key in series.key_coverage(inputs, key, event, start, end):
        rows.append({"hour": to_iso(hour), "events": events, "with_key": with_key,
                     "share": round(with_key / events, 3) if events else None})
    return {"key": key, "event_name": event, "hours": rows}


def _delivery_errors(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    start, end = _span(inputs, _hours(args, 24))
    rows = [d for d in inputs.delivery_hours if start <= d.hour < end]
    errors: dict[str, int] = {}
    for d in rows:
        for key, n in d.errors.items():
            errors[key] = errors.get(key, 0) + n
    return {
        "attempts": sum(d.attempts for d in rows),
        "failed_attempts": sum(d.failed_attempts for d in rows),
        "errors": errors,
        "hours": [{"hour": to_iso(d.hour), "attempts": d.attempts, "failed": d.failed_attempts,
                   "events_sent": d.events_sent, "events_received": d.events_received,
                   "retried": d.retried_attempts, "transport_errors": d.transport_errors,
                   "errors": d.errors} for d in rows],
    }


def _hashing_flags(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    event = _event(inputs, args, required=False)
    start, end = _span(inputs, _hours(args, 24))
    return {"event_name": event, "since": to_iso(start), "until": to_iso(end),
            **series.hashing_totals(inputs, event, start, end)}


def _dataset_quality(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    event = _text(args, "event_name", required=False)
    snapshot = inputs.quality
    if snapshot is None:
        return {"error": f"no dataset quality snapshot for this audit ({_read_errors(inputs)})"}
    events = [q for q in snapshot.events if event is None or q.event_name == event]
    if event is not None and not events:
        raise ToolArgumentError(f"no quality entry for that event_name; known: "
                                f"{', '.join(q.event_name for q in snapshot.events)}")
    return {"fetched_at": to_iso(snapshot.fetched_at), "events": [
        {"event_name": q.event_name, "emq": q.composite_score, "match_key_coverage_pct": q.match_key_coverage,
         "event_coverage_pct": q.event_coverage_pct, "upload_frequency": q.upload_frequency,
         "dedupe_key_feedback": [{"key": d.dedupe_key, "browser_pct": d.browser_pct,
                                  "server_pct": d.server_pct} for d in q.dedupe_key_feedback]}
        for q in events]}


def sender_changes(inputs: AuditInputs, args: dict[str, Any]) -> dict[str, Any]:
    """The pixel's sender changes of the last ``hours`` before the audited window's end (and any
    since, up to when the question is asked)."""
    start = inputs.window_end - _hours(args, 48) * HOUR
    changes = [c for c in inputs.sender_changes if c.at >= start]
    return {"since": to_iso(start), "changes": [{**c.as_json(), "what": c.describe()} for c in changes]}


def _finding_detail(box: Toolbox, args: dict[str, Any]) -> dict[str, Any]:
    finding_id = _text(args, "finding_id", required=True)
    found = next((f for f in box.findings if f.id == finding_id), None)
    if found is None:
        known = ", ".join(f.id for f in box.findings[:40])
        raise ToolArgumentError(f"no finding with that id; known: {known}")
    return {**finding_brief(found), "evidence": found.evidence[:20],
            "window": [to_iso(found.window_start), to_iso(found.window_end)]}


def _dump(payload: dict[str, Any]) -> str:
    """JSON no longer than MAX_RESULT_CHARS: oldest hour rows are dropped first."""
    text = to_json(payload)
    rows = payload.get("hours")
    while len(text) > MAX_RESULT_CHARS and isinstance(rows, list) and len(rows) > 1:
        rows = rows[len(rows) // 4 or 1:]
        payload = {**payload, "hours": rows, "truncated": "older hours left out"}
        text = to_json(payload)
    if len(text) > MAX_RESULT_CHARS:
        text = json.dumps({"error": "result too large; narrow the question (fewer hours, one event)"})
    return text

