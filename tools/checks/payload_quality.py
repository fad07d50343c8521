"""Payload quality: server events Meta accepts but cannot use well.

Counted at ingest into ``payload_hours`` (``tools.ledger.payload`` sets the flags, the rollups count
them), so the check reads rollups only:

- ``payload.test_event_code``: production events sent with a ``test_event_code`` land in Test Events
  and are not counted in the dataset (optimisation and reporting never see them).
- ``payload.purchase_no_currency`` / ``payload.purchase_value_text`` / ``payload.purchase_value_zero``:
  a Purchase Meta cannot value (no currency; value as text; value zero or missing): ROAS and value
  optimisation go blind.
- ``payload.no_action_source``: Meta cannot tell where the event happened.
- ``payload.website_no_source_url`` / ``payload.website_no_user_agent``: website events without the
  page or the browser: weaker matching and no domain attribution.
- ``payload.user_data_not_string``: user_data values sent as numbers or booleans where Meta wants
  strings (booleans are discarded; numbers are read inconsistently by senders' SDKs).
- ``payload.constant_ip``: one client_ip_address for nearly all events of many different users:
  the sender passes its own server's address, which spoils matching for everyone.

event_time in local time shows as a constant whole-hour offset between event_time and arrival,
which ``latency.clock_offset`` already reports; event_time in milliseconds is Meta's own validation
error (``tools.meta.validate``: the batch is refused, a delivery finding), which the relay repairs to
seconds in repair mode; neither is repeated here.

The relay in ``repair`` mode (the ``rehash`` fix switches it on, after approval) repairs future events
where the intent is certain (``tools.relay.payload_repair``): value as plain decimal text, user_data
numbers, a Purchase's missing currency when the pixel has a ``default_currency``; events it repaired
arrive clean and are not counted here. Events already accepted are not replayed: Meta counted them,
and a copy with the same event_id and name within 48 hours is dropped by its deduplication, while
one under a new id would be counted twice.

Each share is judged against the pixel's previous 7 days (``stats.judge_share``): a problem that has
been there all week is ``info`` (``metrics.standing``), a new one a ``warning``. None of these is a
root cause of its own (``tools.diagnosis.rules.fallback_cause`` leaves the ``payload`` check out):
they are for the person who owns the sender, with a repair in words (``metrics.repair``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tools.checks.series import span_label, window_hours
from tools.checks.stats import judge_share, usual_counts
from tools.checks.types import AuditInputs, Finding, make_finding
from tools.timeutil import DAY, HOUR, as_utc

HISTORY_DAYS = 7
# Below this share of the relevant events an issue is left alone (one odd event in a quiet hour).
ISSUE_FLOOR = 0.05
MIN_AFFECTED = 3
# The audited hour is widened back to this many hours when it holds fewer relevant events.
POOL_HOURS = 24
MIN_EVENTS = 20
# A constant IP: the most common address carries this share of the events with an IP, over at
# least CONSTANT_IP_USERS different users (an estimate from the rollups' user sketch).
CONSTANT_IP_SHARE = 0.8
CONSTANT_IP_USERS = 10
USER_BITS = 256
PURCHASE = "Purchase"
# Words a sender puts into server event_ids to mark the channel: the browser's copy then carries
# another id (``srv_1234`` against ``1234``), so the pair cannot deduplicate (``dedupe.reasons``).
CHANNEL_MARKERS = frozenset({"srv", "server", "capi", "s2s", "api", "backend", "conv", "cs", "ss"})

# issue -> (whose events are the denominator, what it means, the repair in words)
ISSUES: dict[str, tuple[str, str, str]] = {
    "test_event_code": (
        "all", "carry a test_event_code: Meta files them under Test Events and does not count them",
        "Remove test_event_code from the production sender's configuration; the relay cannot move "
        "events Meta has filed as test events (nothing to replay)."),
    "purchase_no_currency": (
        "purchase", "have no currency, so Meta cannot use their value",
        "Send custom_data.currency (ISO 4217, e.g. USD) with every Purchase; for a shop with one "
        "currency, set the pixel's default_currency and the relay in repair mode adds it."),
    "purchase_value_text": (
        "purchase", "send custom_data.value as text instead of a number",
        "Send custom_data.value as a number (19.99, not \"19.99\"); the relay in repair mode converts "
        "a plain decimal text (not \"19,99\" or \"$20\") for events from then on."),
    "purchase_value_zero": (
        "purchase", "have a value of zero or none",
        "Send the order total in custom_data.value; only the shop knows it, so no repair applies."),
    "no_action_source": (
        "all", "have no action_source, so Meta cannot tell where they happened",
        "Set action_source on every event (website for events on the site, app, physical_store, ...)."),
    "website_no_source_url": (
        "website", "lack event_source_url (the page the event happened on)",
        "Send the page URL of the event (event_source_url) with every website event."),
    "website_no_user_agent": (
        "website", "lack client_user_agent (the customer's browser)",
        "Forward the customer's browser User-Agent as user_data.client_user_agent."),
    "user_data_not_string": (
        "all", "send user_data values as numbers or booleans instead of strings",
        "Send every user_data value as a string; the relay in repair mode sends numbers as strings "
        "(and drops booleans) for events from then on."),
}


@dataclass(frozen=True)
class PayloadHour:
    """``payload_hours`` of one event name in one hour of event_time (see PayloadHourRollup)."""

    hour: datetime
    event_name: str
    events: int
    issues: dict[str, int] = field(default_factory=dict)
    examples: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # website, late (arrived > 48 h after event_time), late_in (copies that arrived in this hour more
    # than 48 h after their event_time: counted by arrival), idm (Purchase event_id != order id),
    # ip (events with a client IP), idf (events with an event_id), users (events with a user key).
    counts: dict[str, int] = field(default_factory=dict)
    ip_top: dict[str, int] = field(default_factory=dict)  # masked IP -> events (Misra-Gries)
    id_shapes: dict[str, int] = field(default_factory=dict)  # event_id shape -> events (Misra-Gries)
    user_bits: int = 0  # bitmap sketch of distinct users (USER_BITS bits)


def payload_hour_from_row(row: Any) -> PayloadHour:
    detail: Mapping[str, Any] = row.detail or {}
    return PayloadHour(
        hour=as_utc(row.hour), event_name=row.event_name, events=row.events,
        issues=dict(detail.get("issues") or {}),
        examples={k: tuple(v) for k, v in (detail.get("examples") or {}).items()},
        counts=dict(detail.get("n") or {}), ip_top=dict(detail.get("ip") or {}),
        id_shapes=dict(detail.get("id_shapes") or {}), user_bits=int(detail.get("user_bits") or "0", 16))


def channel_marked(shape: str) -> bool:
    """An event_id shape (``tools.ledger.payload.id_shape``) with a channel word or zero padding, which
    the browser copy's id most likely lacks."""
    return "09" in shape or any(word in CHANNEL_MARKERS for word in re.findall(r"[a-z]{2,}", shape))


def distinct_users(bits: int) -> float:
    """Linear-counting estimate of the distinct users behind a user bitmap."""
    empty = USER_BITS - bin(bits).count("1")
    if empty == 0:
        return USER_BITS * math.log(USER_BITS)
    return -USER_BITS * math.log(empty / USER_BITS)


def _denominator(row: PayloadHour, kind: str) -> int:
    if kind == "purchase":
        return row.events if row.event_name == PURCHASE else 0
    if kind == "website":
        return row.counts.get("web", 0)
    return row.events


def _window(inputs: AuditInputs, kind: str) -> list[datetime]:
    """The audited hours, widened back (up to POOL_HOURS) until they hold MIN_EVENTS relevant events."""
    hours = window_hours(inputs)
    by_hour: dict[datetime, int] = {}
    for row in inputs.payload_hours:
        by_hour[row.hour] = by_hour.get(row.hour, 0) + _denominator(row, kind)
    total = sum(by_hour.get(h, 0) for h in hours)
    while total < MIN_EVENTS and len(hours) < POOL_HOURS:
        hours.insert(0, hours[0] - HOUR)
        total += by_hour.get(hours[0], 0)
    return hours


def _counts(rows: Iterable[PayloadHour], issue: str, kind: str) -> tuple[int, int]:
    k = n = 0
    for row in rows:
        if _denominator(row, kind):
            n += _denominator(row, kind)
            k += row.issues.get(issue, 0)
    return k, n


def _history(inputs: AuditInputs, start: datetime) -> list[list[PayloadHour]]:
    days: list[list[PayloadHour]] = [[] for _ in range(HISTORY_DAYS)]
    for row in inputs.payload_hours:
        if start - HISTORY_DAYS * DAY <= row.hour < start:
            days[(start - row.hour - HOUR) // DAY].append(row)
    return days


def _issue_findings(inputs: AuditInputs) -> list[Finding]:
    out: list[Finding] = []
    for issue, (kind, meaning, repair) in ISSUES.items():
        hours = _window(inputs, kind)
        in_window = set(hours)
        now = [row for row in inputs.payload_hours if row.hour in in_window]
        k, n = _counts(now, issue, kind)
        if k < MIN_AFFECTED:
            continue
        history = _history(inputs, hours[0])
        k_hist, n_hist = usual_counts([_counts(day, issue, kind) for day in history])
        verdict = judge_share(k, n, k_hist, n_hist, floor=ISSUE_FLOOR)
        if not verdict.above_floor:
            continue
        standing = not verdict.news
        by_name: dict[str, int] = {}
        examples: list[str] = []
        for row in now:
            if row.issues.get(issue):
                by_name[row.event_name] = by_name.get(row.event_name, 0) + row.issues[issue]
                examples.extend(e for e in row.examples.get(issue, ()) if e not in examples)
        label = span_label(hours)
        names = ", ".join(f"{name} {count}" for name, count in sorted(by_name.items()))
        what = {"purchase": "Purchase events", "website": "website events"}.get(kind, "server events")
        out.append(make_finding(
            inputs, check="payload", code=f"payload.{issue}", severity="info" if standing else "warning",
            event_name=PURCHASE if kind == "purchase" else None,
            summary=f"{k} of {n} {what} in {label} ({verdict.share:.0%}) {meaning}.",
            metrics={"observed": round(verdict.share, 3), "threshold": ISSUE_FLOOR,
                     "baseline": None if verdict.usual is None else round(verdict.usual, 3),
                     "count": k, "events": n, "standing": int(standing), "repair": repair},
            evidence=[f"{label}: by event: {names}",
                      *(f"example: {example}" for example in examples[:3]),
                      f"repair: {repair}"],
        ))
    return out


def check_constant_ip(inputs: AuditInputs) -> list[Finding]:
    """payload.constant_ip: one client IP for nearly all events of many users (the server's own)."""
    hours = set(_window(inputs, "all"))
    top: dict[str, int] = {}
    carriers, bits = 0, 0
    for row in inputs.payload_hours:
        if row.hour not in hours:
            continue
        carriers += row.counts.get("ip", 0)
        bits |= row.user_bits
        for value, count in row.ip_top.items():
            top[value] = top.get(value, 0) + count
    if carriers < MIN_EVENTS or not top:
        return []
    value, count = max(top.items(), key=lambda item: (item[1], item[0]))
    share, users = count / carriers, distinct_users(bits)
    if share < CONSTANT_IP_SHARE or users < CONSTANT_IP_USERS:
        return []
    label = span_label(sorted(hours))
    network = value.split("#")[0]
    repair = ("Forward the customer's address (the client's IP, e.g. from X-Forwarded-For) as "
              "client_ip_address, or leave the field out: one shared address is worse than none. A relay "
              "repair could drop an address shared by most users; repair_and_replay does not do it yet.")
    return [make_finding(
        inputs, check="payload", code="payload.constant_ip", severity="warning",
        summary=f"{count} of {carriers} server events with an IP address in {label} ({share:.0%}) carry the "
                f"same client_ip_address ({network}) for about {users:.0f} different users: most likely "
                "the sender's own server address, which spoils matching.",
        metrics={"observed": round(share, 3), "threshold": CONSTANT_IP_SHARE, "baseline": None,
                 "count": count, "events": carriers, "users": round(users), "repair": repair},
        evidence=[f"{label}: most common client_ip_address {value} (network and fingerprint, masked) in "
                  f"{count} of {carriers} events; about {users:.0f} distinct users by the hashed user keys",
                  f"repair: {repair}"],
    )]


def check_payload(inputs: AuditInputs) -> list[Finding]:
    """All payload-quality findings for the audited window."""
    if not inputs.payload_hours:
        return []
    return [*_issue_findings(inputs), *check_constant_ip(inputs)]
