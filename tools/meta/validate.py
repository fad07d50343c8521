"""Validate server events the way Meta's ``POST /{pixel}/events`` does, before anything is sent.

Each problem carries a stable ``code`` and what Meta answers for it (``meta_code``/``meta_subcode``).
``severity="error"`` means Meta rejects the *whole* request for it; ``"warning"`` means Meta accepts the
event but matching or attribution suffers.

Choices where Meta documents nothing:
- ``event_time`` more than ``FUTURE_TOLERANCE`` (5 minutes) ahead of ``now`` is a *warning*
  (``event_time_in_future``): Meta documents no limit, so we do not claim a rejection, but it
  almost always means a skewed clock or a wrong time zone. A value of 10^12 or more is
  milliseconds, not seconds: an *error* (``event_time_not_seconds``).
- Messages name fields, never their values: a problem may end up in a log, Slack or an LLM prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from tools.meta.normalize import HASHED_FIELDS, MUST_NOT_HASH
from tools.meta.userdata import prepare_user_data
from tools.timeutil import META_MAX_EVENT_AGE, as_utc, to_unix

MAX_EVENTS_PER_REQUEST = 1000
ACTION_SOURCES: frozenset[str] = frozenset(
    {
        "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
        "business_messaging", "other",
    }
)
PHYSICAL_STORE_MAX_EVENT_AGE = timedelta(days=62)
FUTURE_TOLERANCE = timedelta(minutes=5)
# Meta's subcodes (docs/meta-api.md).
SUBCODE_EVENT_TOO_OLD = 2804003
SUBCODE_FBC_MALFORMED = 2804001
SUBCODE_INSUFFICIENT_CUSTOMER_INFO = 2804050

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class EventProblem:
    """One thing wrong with an event or a request, as Meta would see it."""

    code: str
    message: str
    field: str | None = None
    event_index: int | None = None
    meta_code: int = 100
    meta_subcode: int | None = None
    severity: Severity = "error"


def _problem(
    code: str, message: str, index: int | None, *, field: str | None = None,
    subcode: int | None = None, severity: Severity = "error",
) -> EventProblem:
    where = f"event {index}: " if index is not None else ""
    return EventProblem(
        code=code, message=where + message, field=field, event_index=index,
        meta_subcode=subcode, severity=severity,
    )


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def event_time_seconds(value: Any) -> int | None:
    """Unix seconds from an int (or an integral float / digit string, as form encodings produce)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _check_event_time(event: Mapping[str, Any], now: datetime, index: int | None) -> list[EventProblem]:
    if "event_time" not in event or event["event_time"] is None:
        return [_problem("missing_event_time", "event_time is required (unix seconds, UTC)", index,
                         field="event_time")]
    seconds = event_time_seconds(event["event_time"])
    if seconds is None:
        return [_problem("event_time_invalid", "event_time must be an integer unix timestamp in seconds",
                         index, field="event_time")]
    if seconds >= 10**12:
        return [_problem("event_time_not_seconds",
                         "event_time looks like milliseconds; Meta wants unix seconds", index,
                         field="event_time")]
    now_s = to_unix(as_utc(now))
    physical = event.get("action_source") == "physical_store"
    max_age = PHYSICAL_STORE_MAX_EVENT_AGE if physical else META_MAX_EVENT_AGE
    age = now_s - seconds
    if age > max_age.total_seconds():
        return [_problem(
            "event_time_too_old",
            f"Event Timestamp Too Old: event_time is {age // 86400} days old; Meta accepts at most "
            f"{max_age.days} days{' for physical_store' if physical else ''} and rejects the whole request",
            index, field="event_time", subcode=SUBCODE_EVENT_TOO_OLD,
        )]
    if -age > FUTURE_TOLERANCE.total_seconds():
        return [_problem(
            "event_time_in_future",
            f"event_time is {-age // 60} minutes in the future; check the sender's clock and time zone "
            "(event_time is unix seconds, UTC)",
            index, field="event_time", severity="warning",
        )]
    return []


def _check_source(event: Mapping[str, Any], index: int | None) -> list[EventProblem]:
    problems: list[EventProblem] = []
    source = event.get("action_source")
    if _is_blank(source):
        problems.append(_problem("missing_action_source", "action_source is required", index,
                                 field="action_source"))
    elif not isinstance(source, str) or source not in ACTION_SOURCES:
        problems.append(_problem(
            "invalid_action_source",
            "action_source must be one of " + ", ".join(sorted(ACTION_SOURCES)), index,
            field="action_source",
        ))
    if source == "website":
        if _is_blank(event.get("event_source_url")):
            problems.append(_problem("missing_event_source_url",
                                     "website events require event_source_url", index,
                                     field="event_source_url"))
        user_data = event.get("user_data")
        agent = user_data.get("client_user_agent") if isinstance(user_data, Mapping) else None
        if _is_blank(agent):
            problems.append(_problem("missing_client_user_agent",
                                     "website events require user_data.client_user_agent", index,
                                     field="client_user_agent"))
    return problems


# Per-field quality flags that do not make Meta reject the request but hurt matching.
_USER_DATA_WARNINGS: tuple[tuple[str, str, str], ...] = (
    ("raw", "user_data_raw_pii", "sent unhashed; it must be normalized and SHA-256 hashed"),
    ("invalid", "user_data_invalid", "has a value that is not a valid customer-information value"),
    ("placeholder", "user_data_placeholder", "holds a placeholder (hash of an empty or dummy value)"),
    ("uppercase_hex", "user_data_uppercase_hex", "is hashed as upper-case hex; Meta wants lower-case"),
    ("not_sha256", "user_data_not_sha256", "is hashed but not with SHA-256 (wrong length)"),
    ("must_not_hash", "user_data_must_not_hash", "must not be hashed but arrived hashed"),
)


def _check_user_data(event: Mapping[str, Any], index: int | None) -> list[EventProblem]:
    user_data = event.get("user_data")
    if user_data is None:
        return [_problem("missing_user_data", "user_data is required", index, field="user_data")]
    if not isinstance(user_data, Mapping):
        return [_problem("user_data_not_object", "user_data must be an object", index, field="user_data")]
    prepared = prepare_user_data(user_data)
    problems: list[EventProblem] = []
    if "fbc" in prepared.malformed:
        problems.append(_problem(
            "fbc_malformed",
            "Click ID Incorrectly Formatted: fbc must be fb.{subdomainIndex}.{creationTime ms}.{fbclid}",
            index, field="fbc", subcode=SUBCODE_FBC_MALFORMED,
        ))
    if "fbp" in prepared.malformed:
        problems.append(_problem(
            "fbp_malformed", "fbp must be fb.{subdomainIndex}.{creationTime ms}.{random}", index,
            field="fbp", severity="warning",
        ))
    if not prepared.keys_present:
        problems.append(_problem(
            "insufficient_customer_information",
            "user_data has no usable customer information parameter (e.g. em, ph, external_id, "
            "client_ip_address with client_user_agent, fbc, fbp)",
            index, field="user_data", subcode=SUBCODE_INSUFFICIENT_CUSTOMER_INFO,
        ))
    for attribute, code, text in _USER_DATA_WARNINGS:
        for name in sorted(getattr(prepared, attribute)):
            if attribute == "must_not_hash" and name in prepared.malformed:
                continue  # a hashed fbc/fbp is reported as malformed above
            if attribute == "invalid" and name not in HASHED_FIELDS | MUST_NOT_HASH:
                problems.append(_problem("user_data_unknown_field",
                                         f"user_data.{name} is not a Meta customer-information parameter",
                                         index, field=name, severity="warning"))
                continue
            problems.append(_problem(code, f"user_data.{name} {text}", index, field=name,
                                     severity="warning"))
    return problems


def validate_event(
    event: Mapping[str, Any], *, now: datetime, index: int | None = None
) -> list[EventProblem]:
    """Everything Meta would object to in one server event, errors first.

    ``now`` is when the event would be sent (event age is measured against it). ``index`` is the
    event's position in its request, copied to each problem.
    """
    if not isinstance(event, Mapping):
        return [_problem("event_not_object", "each event must be a JSON object", index)]
    problems: list[EventProblem] = []
    name = event.get("event_name")
    if _is_blank(name) or not isinstance(name, str):
        problems.append(_problem("missing_event_name", "event_name is required", index, field="event_name"))
    problems.extend(_check_event_time(event, now, index))
    problems.extend(_check_source(event, index))
    problems.extend(_check_user_data(event, index))
    return sorted(problems, key=lambda problem: problem.severity != "error")


def _decode_event(item: Any) -> Any:
    """The SDK sends each event as a JSON-encoded string; decode those, leave anything else as is."""
    if isinstance(item, str | bytes):
        try:
            return json.loads(item)
        except ValueError:
            return item
    return item


def validate_batch(events: Sequence[Any], *, now: datetime) -> list[EventProblem]:
    """Problems of a whole ``data`` array: batch-level ones (not a list, empty, more than
    ``MAX_EVENTS_PER_REQUEST``, repeated event_id) and every event's own, each with its index.
    Events may be objects or JSON-encoded strings. Any ``error`` means Meta rejects the request."""
    if isinstance(events, str | bytes) or not isinstance(events, Sequence):
        return [_problem("data_not_list", "data must be a JSON array of events", None, field="data")]
    if not events:
        return [_problem("data_empty", "data must contain at least one event", None, field="data")]
    problems: list[EventProblem] = []
    if len(events) > MAX_EVENTS_PER_REQUEST:
        problems.append(_problem(
            "too_many_events",
            f"data has {len(events)} events; Meta accepts at most {MAX_EVENTS_PER_REQUEST} per request",
            None, field="data",
        ))
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(events):
        event = _decode_event(item)
        problems.extend(validate_event(event, now=now, index=index))
        if isinstance(event, Mapping) and isinstance(event.get("event_id"), str | int):
            key = (str(event.get("event_name")), str(event["event_id"]))
            if key in seen:
                problems.append(_problem(
                    "duplicate_event_id",
                    f"repeats the event_name and event_id of event {seen[key]}; Meta keeps only one",
                    index, field="event_id", severity="warning",
                ))
            else:
                seen[key] = index
    return sorted(problems, key=lambda problem: problem.severity != "error")
