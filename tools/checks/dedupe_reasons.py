"""Why browser and server copies of an event do not deduplicate: ``dedupe.reasons``.

Meta merges a Pixel event and a Conversions API event when they have the same event name and the
same event_id and arrive within 48 hours of each other. capi-agent sees the server side event by
event (``payload_hours``) but the browser side only through Meta: hourly counts per source
(``meta_counts``) and the dataset quality API's dedupe-key feedback (the share of browser and server
events carrying an event_id). So, per event name the browser sends:

- ``browser_no_event_id`` (seen, Meta's figure): browser events without an event_id;
- ``name_mismatch`` (seen, Meta's counts): the browser's name has no server events, but a server name
  that differs only in case or punctuation (``purchase`` / ``Purchase``) or is a known alias does;
- ``server_late`` (seen, ledger): server copies that reached us more than 48 hours after event_time,
  counted in the hour they arrived (``late_in``): such a copy's own event_time hour is always older than
  the 48 hours read here, so its share is of all the copies that arrived in those 48 hours;
- ``server_no_event_id`` (seen, ledger): server copies without an event_id;
- ``id_format`` (inferred): server event_ids carrying a channel word or zero padding (``srv_0123``)
  that a browser id most likely lacks. The browser's ids themselves are invisible to us, so this is
  said as likely, never as fact; a Purchase whose event_id differs from its order id is reported
  beside it (a common cause of "different id for the same order") but never triggers on its own.

A reason counts when it covers at least ``REASON_FLOOR`` of its events; the finding (a warning, no
root cause of its own) lists each with its share and the fix in words for the sender's owner.
"""

from __future__ import annotations

import re
from datetime import datetime

from tools.checks.payload_quality import PayloadHour, channel_marked
from tools.checks.series import span_label
from tools.checks.types import AuditInputs, Finding, make_finding
from tools.timeutil import DAY, HOUR

REASON_FLOOR = 0.2
# Browser events over the last 48 hours below this are too few to say anything about their pairs.
MIN_BROWSER_EVENTS = 10
MIN_SERVER_EVENTS = 10
PAIR_WINDOW = 2 * DAY
SERVER_POOL = 30
# Names senders use for a standard event on one channel only (compared after normalisation).
ALIASES: dict[str, frozenset[str]] = {
    "purchase": frozenset({"ordercompleted", "checkoutcompleted", "orderplaced", "completepayment"}),
    "addtocart": frozenset({"productadded", "addedtocart"}),
    "initiatecheckout": frozenset({"checkoutstarted", "begincheckout"}),
    "lead": frozenset({"generatelead", "formsubmitted"}),
}

FIXES: dict[str, str] = {
    "browser_no_event_id": "Pass the event_id to the Pixel too: fbq('track', name, data, {eventID: id}) "
                           "with the id the server sends for the same event.",
    "name_mismatch": "Send the same event name from both channels (Meta's standard name, exact case).",
    "server_late": "Send server events within minutes: copies arriving more than 48 hours after the browser's "
                   "are never merged, so the conversion is counted twice.",
    "server_no_event_id": "Give every server event the event_id of its browser copy.",
    "id_format": "Use one id for both copies: no channel prefix or suffix, no zero padding, the same id for "
                 "the same order (e.g. the order id) on the Pixel and the server.",
}
LABELS: dict[str, str] = {
    "browser_no_event_id": "browser copies without event_id (Meta's dedupe feedback)",
    "name_mismatch": "event name differs between channels",
    "server_late": "server copy arrived more than 48 hours after event_time",
    "server_no_event_id": "server copies without event_id",
    "id_format": "server event_id format most likely differs from the browser's (inferred)",
}


def normalize_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _same_event(browser: str, server: str) -> bool:
    a, b = normalize_name(browser), normalize_name(server)
    return a == b or b in ALIASES.get(a, frozenset()) or a in ALIASES.get(b, frozenset())


def _browser_counts(inputs: AuditInputs, since: datetime) -> tuple[dict[str, int], dict[str, int]]:
    browser: dict[str, int] = {}
    server: dict[str, int] = {}
    for count in inputs.meta_counts or ():
        if since <= count.hour < inputs.window_end:
            side = browser if count.source == "browser" else server
            side[count.event_name] = side.get(count.event_name, 0) + count.count
    return browser, server


def _server_rows(inputs: AuditInputs, name: str) -> list[PayloadHour]:
    """The name's server rows of the latest hours: back from the audited hour until they hold
    SERVER_POOL events (at most PAIR_WINDOW), so a change is judged on what is sent now."""
    by_hour = {row.hour: row for row in inputs.payload_hours if row.event_name == name}
    rows: list[PayloadHour] = []
    hour, events = inputs.window_end - HOUR, 0
    while events < SERVER_POOL and hour >= inputs.window_end - PAIR_WINDOW:
        row = by_hour.get(hour)
        if row is not None:
            rows.append(row)
            events += row.events
        hour -= HOUR
    return rows


def _reasons(inputs: AuditInputs, name: str, browser_n: int, server_names: dict[str, int],
             ) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Reason -> (events affected, events judged), with evidence lines for the name."""
    reasons: dict[str, tuple[int, int]] = {}
    evidence: list[str] = []
    if inputs.quality is not None:
        for quality in inputs.quality.events:
            for fb in quality.dedupe_key_feedback:
                if quality.event_name == name and fb.dedupe_key == "event_id" and fb.browser_pct is not None:
                    missing = round(browser_n * (100 - fb.browser_pct) / 100)
                    reasons["browser_no_event_id"] = (missing, browser_n)
                    server_pct = "?" if fb.server_pct is None else f"{fb.server_pct:.0f}"
                    evidence.append(f"Meta dedupe feedback for {name}: browser events with event_id "
                                    f"{fb.browser_pct:.0f}%, server {server_pct}%")
    if name not in server_names:
        twins = sorted(other for other in server_names if other != name and _same_event(name, other))
        if twins:
            reasons["name_mismatch"] = (browser_n, browser_n)
            evidence.append(f"Meta counts, last 48 h: browser sends {name} ({browser_n}), the server sends "
                            + ", ".join(f"{t} ({server_names[t]})" for t in twins) + f" and no {name}")
    rows = _server_rows(inputs, name)
    # Late copies against every copy that arrived over whole days (PAIR_WINDOW): the hours' own events
    # plus the late copies of older events that arrived meanwhile. Late copies arrive around the clock,
    # unlike the day's own events, so a shorter night-time window would overstate their share.
    recent = [row for row in inputs.payload_hours if row.event_name == name
              and inputs.window_end - PAIR_WINDOW <= row.hour < inputs.window_end]
    late = sum(row.counts.get("late_in", 0) for row in recent)
    arrived = sum(row.events for row in recent) + late
    if arrived >= MIN_SERVER_EVENTS:
        reasons["server_late"] = (late, arrived)
    if late:
        evidence.append(f"{late} of {arrived} server {name} copies that arrived in the latest "
                        f"{PAIR_WINDOW // HOUR} h came more than 48 hours after their event_time; Meta keeps "
                        "them beside the browser's copy")
    events = sum(row.events for row in rows)
    if events >= MIN_SERVER_EVENTS:
        with_id = sum(row.counts.get("idf", 0) for row in rows)
        shapes: dict[str, int] = {}
        for row in rows:
            for shape, count in row.id_shapes.items():
                shapes[shape] = shapes.get(shape, 0) + count
        marked = sum(count for shape, count in shapes.items() if channel_marked(shape))
        reasons["server_no_event_id"] = (events - with_id, events)
        if with_id:
            reasons["id_format"] = (min(marked, with_id), with_id)
            common = sorted(shapes.items(), key=lambda item: (-item[1], item[0]))[:3]
            evidence.append(f"server {name} event_id shapes, latest {len(rows)} h (digits 9, zero-padded 09, "
                            "letters a, mixed x): "
                            + ", ".join(f"{shape} {count}" for shape, count in common))
        other_id = sum(row.counts.get("idm", 0) for row in rows)
        if other_id:
            evidence.append(f"{other_id} of {events} server {name} events carry an event_id other than their "
                            "order id; if the Pixel uses the order id as eventID, these pairs cannot merge")
    return reasons, evidence


def check_dedupe_reasons(inputs: AuditInputs) -> list[Finding]:
    """dedupe.reasons, per event name the browser sends (see the module docstring)."""
    if inputs.meta_counts is None:
        return []
    since = inputs.window_end - PAIR_WINDOW
    browser, server = _browser_counts(inputs, since)
    # Server names as Meta counted them, or as the ledger recorded them (Meta may not have them yet).
    ledger: dict[str, int] = {}
    for row in inputs.payload_hours:
        if since <= row.hour < inputs.window_end:
            ledger[row.event_name] = ledger.get(row.event_name, 0) + row.events
    server_names = {name: max(server.get(name, 0), ledger.get(name, 0)) for name in {*server, *ledger}}
    out: list[Finding] = []
    label = span_label([since, inputs.window_end - HOUR])
    for name, browser_n in sorted(browser.items()):
        if browser_n < MIN_BROWSER_EVENTS:
            continue
        reasons, evidence = _reasons(inputs, name, browser_n, server_names)
        found = {reason: (k, n) for reason, (k, n) in reasons.items() if n and k / n >= REASON_FLOOR}
        if not found:
            continue
        ranked = sorted(found, key=lambda r: (-found[r][0] / found[r][1], r))
        main = ranked[0]
        shares = ", ".join(f"{LABELS[r]} {found[r][0] / found[r][1]:.0%}" for r in ranked)
        out.append(make_finding(
            inputs, check="dedupe", code="dedupe.reasons", event_name=name, severity="warning",
            summary=f"Browser and server {name} events are unlikely to deduplicate ({label}): {shares}. "
                    f"Most likely fix: {FIXES[main]}",
            metrics={"observed": round(found[main][0] / found[main][1], 3), "threshold": REASON_FLOOR,
                     "baseline": None, "main_reason": main, "browser_events": browser_n,
                     **{f"share_{r}": round(k / n, 3) for r, (k, n) in found.items()},
                     "fix": FIXES[main]},
            evidence=[*(f"{LABELS[r]}: {found[r][0]} of {found[r][1]} ({found[r][0] / found[r][1]:.0%}); fix: "
                        f"{FIXES[r]}" for r in ranked), *evidence,
                      "not visible to capi-agent: the browser's own event_ids and arrival times (only Meta's "
                      "counts and dedupe feedback), so an id format mismatch is inferred from the server side"],
        ))
    return out
