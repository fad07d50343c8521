"""Repairs of accepted-but-useless payloads the relay makes in ``repair`` mode, before recording and
forwarding an event (``tools.relay.accept``). Only repairs whose intent is certain:

- ``event_time`` in milliseconds (13 digits; Meta would refuse the batch, or date it 50,000 years
  ahead) -> seconds;
- ``custom_data.value`` sent as a plain decimal text (``"19.99"``) -> the number; text that is not
  a plain decimal (``"19,99"``, ``"$20"``) is left for the sender's owner, since guessing the decimal
  separator could multiply a value by 100;
- a Purchase without ``currency`` -> the pixel's configured ``default_currency``, when one is set (a
  shop selling in one currency); without it nothing is guessed.

- user_data values Meta wants as strings sent as numbers (``zp: 94035``, ``fb_login_id: 1234``) -> the
  same digits as a string; a boolean carries no usable value and is dropped.

What the relay cannot repair is said in
the payload findings' repair text: a ``test_event_code`` (removing it would move test traffic into
production), missing ``action_source``, ``event_source_url`` or ``client_user_agent`` (unknown), a
constant ``client_ip_address``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from tools.meta.normalize import HASHED_FIELDS, MUST_NOT_HASH
from tools.meta.validate import event_time_seconds
from tools.relay.limits import MAX_EVENT_TIME, MILLISECONDS_FROM

# Below this a divided value would be before 2001: not a millisecond timestamp of a real event.
SECONDS_FROM = 10**9
_DECIMAL = re.compile(r"^\s*-?\d{1,15}(\.\d{1,6})?\s*$")
PURCHASE = "Purchase"


def _as_text(value: Any) -> Any:
    """A number as its text (an integral float without ``.0``); None for a boolean; else unchanged."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float) else value


def _user_data_strings(user_data: Mapping[str, Any]) -> dict[str, Any] | None:
    """user_data with numbers as strings and booleans dropped, or None when nothing changes."""
    out: dict[str, Any] = {}
    changed = False
    for name, value in user_data.items():
        if (name not in HASHED_FIELDS and name not in MUST_NOT_HASH) or value.__class__ is str:
            out[name] = value
            continue
        if isinstance(value, list | tuple):
            items = [_as_text(item) for item in value]
            kept = [item for item in items if item is not None]
            changed |= kept != list(value)
            if kept:
                out[name] = kept
            continue
        text = _as_text(value)
        changed |= text is not value
        if text is not None:
            out[name] = text
    return out if changed else None


def repair_payload(event: Any, *, default_currency: str | None = None) -> tuple[Any, list[str]]:
    """The event with the repairs above (a new dict; the input is not changed) and the names of the
    repairs made (``event_time_ms``, ``value_text``, ``currency_default``, ``user_data_strings``).
    Anything that is not an event object is returned as it is, for validation to report."""
    if not isinstance(event, Mapping):
        return event, []
    out: dict[str, Any] = dict(event)
    repairs: list[str] = []
    user_data = event.get("user_data")
    if isinstance(user_data, Mapping):
        strings = _user_data_strings(user_data)
        if strings is not None:
            out["user_data"] = strings
            repairs.append("user_data_strings")
    seconds = event_time_seconds(event.get("event_time"))
    if seconds is not None and seconds >= MILLISECONDS_FROM and SECONDS_FROM <= seconds // 1000 < MAX_EVENT_TIME:
        out["event_time"] = seconds // 1000
        repairs.append("event_time_ms")
    custom = event.get("custom_data")
    if isinstance(custom, Mapping):
        repaired_custom = dict(custom)
        value = custom.get("value")
        if isinstance(value, str) and _DECIMAL.match(value):
            number = float(value)
            if math.isfinite(number):
                repaired_custom["value"] = number
                repairs.append("value_text")
        if event.get("event_name") == PURCHASE and not custom.get("currency") and default_currency:
            repaired_custom["currency"] = default_currency
            repairs.append("currency_default")
        if repaired_custom != custom:
            out["custom_data"] = repaired_custom
    elif event.get("event_name") == PURCHASE and custom is None and default_currency:
        # A Purchase with no custom_data at all still gets its currency; its value stays unknown.
        out["custom_data"] = {"currency": default_currency}
        repairs.append("currency_default")
    return (out if repairs else event), repairs
