"""What an event's payload says about its usefulness to Meta, worked out once at the door.

Meta accepts events that it then cannot use well: sent with a ``test_event_code`` (they go to Test
Events, not to the dataset), a Purchase without currency or with its value as text or zero, no
``action_source``, website events without ``event_source_url`` or ``client_user_agent``, user_data
values sent as numbers or booleans, the server's own IP address sent for every customer. The payload
may be purged after the retention period, so what the rollups need is kept in the event's
``flags["payload"]`` (``payload_flags``), from which ``tools.ledger.rollups`` counts ``payload_hours``
both on the way in and on a rebuild.

Nothing raw is kept: examples name the field and the kind of value, never a customer's value; an IP
address is kept as its masked network (the last IPv4 octet, the last 80 IPv6 bits dropped) with a
4-hex fingerprint, which tells one address sent for everyone from many without identifying anyone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.payload_quality import CHANNEL_MARKERS
from tools.meta.normalize import HASHED_FIELDS, MUST_NOT_HASH
from tools.meta.redact import redact
from tools.timeutil import as_utc

if TYPE_CHECKING:
    from tools.checks.payload_quality import PayloadHour

PURCHASE = "Purchase"
WEBSITE = "website"
# Meta deduplicates a browser and a server copy only within 48 hours of the first one.
DEDUP_WINDOW_SECONDS = 48 * 3600
_ID_TOKEN = re.compile(r"[0-9A-Za-z]+|[^0-9A-Za-z]+")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
MAX_SHAPE = 24
# Issue codes kept in flags["pq"] (the finding codes are "payload." + these).
# event_time in milliseconds is not among them: the relay refuses it before recording (Meta would
# date it 50,000 years ahead) and it cannot be stored as a time (see tools.meta.validate).
ISSUES = ("test_event_code", "purchase_no_currency", "purchase_value_text",
          "purchase_value_zero", "no_action_source", "website_no_source_url", "website_no_user_agent",
          "user_data_not_string")


def mask(text: str, keep: int = 2) -> str:
    """The first ``keep`` characters and the length: enough to recognise a value one already knows."""
    text = str(text)
    if len(text) <= keep:
        return "*" * len(text)
    return f"{text[:keep]}***({len(text)})"


@lru_cache(maxsize=8192)
def _mask_ip(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    fingerprint = hashlib.sha256(address.packed).hexdigest()[:4]
    if address.version == 4:
        network = ".".join(str(address).split(".")[:3]) + ".x"
    else:
        network = str(ipaddress.ip_network(f"{address}/48", strict=False))
    return f"{network}#{fingerprint}"


def mask_ip(value: Any) -> str | None:
    """The network of an address (``203.0.113.x``, ``2001:db8:1::/48``) plus a 4-hex fingerprint
    of the full address; None when the value is not an IP address."""
    # Cached: a customer sends many events from one address, parsing it is most of the cost.
    return _mask_ip(value) if isinstance(value, str) else None


def id_shape(event_id: str) -> str:
    """The form of an event_id without its value, token by token (tokens split at punctuation, which
    stays): digits ``9`` (``09`` when zero-padded), letters ``a`` unless a channel word (kept in lower
    case), a mix of both ``x`` (random or hex ids). ``uuid`` for a UUID. ``srv_000123`` -> ``srv_09``,
    ``ord-1001`` -> ``a-9``, ``ev-3fa9c0`` -> ``a-x``."""
    text = event_id.strip()
    if _UUID.match(text):
        return "uuid"
    parts: list[str] = []
    for token in _ID_TOKEN.findall(text):
        if token.isdigit():
            parts.append("09" if len(token) > 1 and token[0] == "0" else "9")
        elif token.isalpha():
            parts.append(token.lower() if token.lower() in CHANNEL_MARKERS else "a")
        elif token.isalnum():
            parts.append("x")
        else:
            parts.append(token[:1])
    return "".join(parts)[:MAX_SHAPE]


def _value_kind(value: Any) -> str | None:
    """'boolean' / 'number' for a user_data value Meta wants as a string (lists item by item)."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool):
            return "boolean"
        if isinstance(item, int | float):
            return "number"
    return None


def _describe(event: Mapping[str, Any], event_time: Any) -> str:
    """Which event an example is: its name, masked event_id and time (no customer information)."""
    event_id = event.get("event_id")
    ident = f" event_id {mask(str(event_id), 4)}" if event_id not in (None, "") else " (no event_id)"
    return f"{event.get('event_name')}{ident} at {event_time}"


def payload_flags(event: Mapping[str, Any], *, event_time: datetime, received_at: datetime) -> dict[str, Any]:
    """What the payload rollups count (``flags["payload"]``), from the event as it arrived (raw user_data).

    ``pq``: issue -> one masked example line; ``web``: 1 for a website event; ``ip``: masked network
    and fingerprint of client_ip_address; ``late``: 1 when it arrived more than 48 hours after its
    event_time; ``idf``: event_id shape; ``idm``: 1 when a Purchase's event_id is not its order id.
    Keys are only present when they say something, to keep every row small.
    """
    # Runs for every event on every import: cheap checks first, example text only for an issue.
    out: dict[str, Any] = {}
    issues: dict[str, str] = {}  # issue -> what is wrong (the example, once prefixed with the event)
    name = event.get("event_name")
    code = event.get("test_event_code")
    if code not in (None, ""):
        issues["test_event_code"] = f"test_event_code {mask(str(code))}"
    source = event.get("action_source")
    if source in (None, ""):
        issues["no_action_source"] = "no action_source"
    user_data = event.get("user_data")
    if not isinstance(user_data, Mapping):
        user_data = {}
    if source == WEBSITE:
        out["web"] = 1
        if not event.get("event_source_url"):
            issues["website_no_source_url"] = "website event without event_source_url"
        if not user_data.get("client_user_agent"):
            issues["website_no_user_agent"] = "website event without client_user_agent"
    if name == PURCHASE:
        custom = event.get("custom_data")
        if not isinstance(custom, Mapping):
            custom = {}
        value = custom.get("value")
        if not custom.get("currency"):
            issues["purchase_no_currency"] = "Purchase without currency"
        if isinstance(value, str):
            issues["purchase_value_text"] = f"value sent as text ({mask(value, 0)})"
        elif value is None or isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
            issues["purchase_value_zero"] = f"value {'missing' if value is None else 'zero'}"
        event_id, order_id = event.get("event_id"), custom.get("order_id")
        if event_id not in (None, "") and order_id not in (None, "") and str(event_id) != str(order_id):
            out["idm"] = 1
    odd = sorted(f"{field} ({kind})" for field, value in user_data.items()
                 if value.__class__ is not str and (field in HASHED_FIELDS or field in MUST_NOT_HASH)
                 and (kind := _value_kind(value)))
    if odd:
        issues["user_data_not_string"] = "user_data " + ", ".join(odd) + " instead of strings"
    ip = mask_ip(user_data.get("client_ip_address"))
    if ip is not None:
        out["ip"] = ip
    if event_time.tzinfo is None or received_at.tzinfo is None:
        event_time, received_at = as_utc(event_time), as_utc(received_at)
    if (received_at - event_time).total_seconds() > DEDUP_WINDOW_SECONDS:
        out["late"] = 1
    event_id = event.get("event_id")
    if event_id not in (None, "") and not isinstance(event_id, bool):
        out["idf"] = id_shape(str(event_id))
    if issues:
        about = _describe(event, as_utc(event_time).strftime("%Y-%m-%dT%H:%MZ"))
        # redact: a sender may paste a token where a value belongs; never let one into an example.
        out["pq"] = {issue: redact(f"{about}: {text}") for issue, text in sorted(issues.items())}
    return out


# The payload checks compare the audited hour with the week before it.
PAYLOAD_DAYS = timedelta(days=8)


def load_payload_hours(session: Session, *, pixel_id: str, window_end: datetime) -> tuple[PayloadHour, ...]:
    """Payload-quality rollups of the pixel for the 8 days before ``window_end``, by hour and name."""
    from tools.checks.payload_quality import payload_hour_from_row
    from tools.ledger.models import PayloadHourRollup

    end = as_utc(window_end)
    rows = session.execute(select(col(PayloadHourRollup.hour), col(PayloadHourRollup.event_name),
                                  col(PayloadHourRollup.events), col(PayloadHourRollup.detail)).where(
        col(PayloadHourRollup.pixel_id) == pixel_id, col(PayloadHourRollup.hour) >= end - PAYLOAD_DAYS,
        col(PayloadHourRollup.hour) < end).order_by(col(PayloadHourRollup.hour), col(PayloadHourRollup.event_name)))
    return tuple(payload_hour_from_row(row) for row in rows)
