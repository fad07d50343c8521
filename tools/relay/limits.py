"""Limits on what the relay reads, so that no request can make it fail (a 500) or store junk.

Everything here raises ``BadRequest`` (answered as Meta's 400, code 100, nothing stored or forwarded).

Meta documents one limit on ``POST /{pixel}/events``: at most 1000 events per request
(``tools.meta.validate.MAX_EVENTS_PER_REQUEST``). It documents none on body size, string length or
nesting, so the others are ours, chosen well above what a real event needs and below what would
hurt the relay or the ledger:

- ``MAX_BODY_BYTES`` 10 MiB: 1000 events of about 2 KB each, form-encoded by the SDK (each event a
  JSON string inside a JSON array, then percent-encoded: about 3x), is about 6 MB. The body is read in
  chunks and refused as soon as it passes the limit (and before reading when Content-Length says so).
- ``MAX_DEPTH`` 20 levels from the body's root: a real request is body > data > event > custom_data >
  contents > item (6). Deeper input is refused before anything walks it recursively.
- ``MAX_EVENT_NAME_CHARS`` 200 and ``MAX_ID_CHARS`` 400 (event_id, custom_data.order_id): the ledger's
  columns (``tools.ledger.models.Event``), which Postgres enforces.
- ``MAX_STRING_CHARS`` 8192 for any other string (URLs, user agents, custom_data values): common web
  servers cap a whole request line at 8 KB, so no real URL or header value is longer.
- ``MAX_EVENT_BYTES`` 64 KiB per event as JSON: a cart of 200 ``contents`` items is about 20 KB.
- ``event_time`` must be an integer in [0, 2^32) unix seconds (up to the year 2106): the ledger stores
  it as a timestamp, and a larger number is no real event (``10**30`` is not a date at all). The same
  range in milliseconds (13 digits and up) passes here: it is Meta's own validation error
  (``event_time_not_seconds``, a 400 with its subcode) in observe mode, and repaired to seconds in
  repair mode (``tools.relay.payload_repair``).
- Strings must be valid Unicode without NUL: a lone UTF-16 surrogate cannot be encoded as UTF-8 and
  Postgres refuses NUL in text; JSON numbers must be finite (NaN and Infinity are not JSON, and
  Postgres's jsonb refuses them).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from tools.meta.validate import MAX_EVENTS_PER_REQUEST
from tools.meta.wire import BadRequest, multipart_fields

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 20
MAX_EVENT_NAME_CHARS = 200
MAX_ID_CHARS = 400
MAX_STRING_CHARS = 8192
MAX_EVENT_BYTES = 64 * 1024
MAX_EVENT_TIME = 2**32
MILLISECONDS_FROM = 10**12  # event_time from here is milliseconds (tools.meta.validate says the same)

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_EVENTS_PER_REQUEST", "MAX_EVENT_BYTES", "MAX_EVENT_NAME_CHARS",
           "MAX_EVENT_TIME", "MAX_ID_CHARS", "MAX_STRING_CHARS", "BadRequest", "check_events", "decode_events",
           "parse_body", "read_body"]


async def read_body(chunks: AsyncIterator[bytes], content_length: str | None, *,
                    limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused as soon as it is known to pass ``limit`` bytes."""
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        raise BadRequest(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the request body is larger than {limit} bytes")
    return bytes(body)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is too large")
    return value


def loads(text: str | bytes, what: str) -> Any:
    """``json.loads`` that never raises anything but ``BadRequest`` (deep nesting included)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # includes UnicodeDecodeError and int digits over the interpreter's limit
        raise BadRequest(f"{what} could not be parsed as JSON") from exc


def check_value(value: Any, what: str, *, depth: int = 1, skip: frozenset[str] = frozenset()) -> None:
    """Depth, strings (length, Unicode, NUL) and numbers of a parsed value, without recursion.
    ``depth`` is the level ``value`` sits at; keys in ``skip`` (at the top level) are not walked.

    It runs over every value of every request: leaves (most of them strings and integers) are checked
    where their container is read, by exact type, and only containers go on the stack."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep")
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        children: Any
        if kind is dict or (kind is not list and isinstance(item, Mapping)):
            children = []
            for key, child in item.items():
                text = key if type(key) is str else str(key)
                if len(text) > MAX_STRING_CHARS or "\x00" in text or not text.isascii():
                    _check_string(text, what)
                if not (level == depth and key in skip):
                    children.append(child)
        elif kind is list or isinstance(item, list | tuple):
            children = item
        else:
            _check_leaf(item, what)
            continue
        if not children:
            continue
        if level >= MAX_DEPTH:  # its children sit deeper than allowed
            raise BadRequest(f"{what} is nested more than {MAX_DEPTH} levels deep")
        for child in children:
            child_kind = type(child)
            if child_kind is str:
                if len(child) > MAX_STRING_CHARS or "\x00" in child or not child.isascii():
                    _check_string(child, what)
            elif not (child_kind is int or child_kind is bool or child is None):
                stack.append((child, level + 1))


def _check_leaf(item: Any, what: str) -> None:
    if isinstance(item, str):
        _check_string(item, what)
    elif isinstance(item, float) and not math.isfinite(item):
        raise BadRequest(f"{what} holds a number that is not finite")


def _check_string(text: str, what: str) -> None:
    if len(text) > MAX_STRING_CHARS:
        raise BadRequest(f"{what} holds a string longer than {MAX_STRING_CHARS} characters")
    if "\x00" in text:
        raise BadRequest(f"{what} holds a NUL character")
    if text.isascii():  # constant time in CPython, and most strings are: no surrogate to look for
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} holds a string that is not valid Unicode (a lone surrogate)") from None


def parse_body(query: Mapping[str, str], content_type: str, body: bytes) -> dict[str, Any]:
    """Query parameters merged with the body's (JSON, multipart or form-urlencoded), as the Graph API
    reads them (``tools.meta.wire``; the simulator's ``read_params``), within the limits above. ``data`` is
    left as sent (``decode_events`` reads it)."""
    params: dict[str, Any] = dict(query)
    if body.strip():
        media_type = content_type.split(";")[0].strip().lower()
        if media_type == "application/json":
            parsed = loads(body, "the JSON body")
            if not isinstance(parsed, dict):
                raise BadRequest("the JSON body must be an object")
            params.update(parsed)
        elif media_type == "multipart/form-data":
            try:
                params.update(multipart_fields(content_type, body))
            except (ValueError, LookupError) as exc:
                raise BadRequest("the multipart body could not be parsed") from exc
        else:  # form-urlencoded, and what clients send without a content type
            params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    data = params.get("data")
    check_value(params, "the request", skip=frozenset({"data"}) if isinstance(data, str) else frozenset())
    return params


def decode_events(value: Any) -> list[Any]:
    """The ``data`` parameter as a list of events (an array, or its JSON text; elements may be JSON
    strings, as the SDK sends them), within the limits above. Validation reports non-objects."""
    if value is None or value == "":
        raise BadRequest("The parameter data is required")
    depth = 2  # data sits under the body's root
    if isinstance(value, str | bytes):
        value = loads(value, "param data")
        check_value(value, "param data", depth=depth)
    if not isinstance(value, list):
        raise BadRequest("param data must be an array")
    if len(value) > MAX_EVENTS_PER_REQUEST:
        raise BadRequest(f"data has {len(value)} events; at most {MAX_EVENTS_PER_REQUEST} are accepted per "
                         "request")
    events = []
    for item in value:
        if isinstance(item, str):
            try:
                decoded = json.loads(item, parse_constant=_no_constant, parse_float=_finite_float)
            except RecursionError:
                raise BadRequest(f"param data is nested more than {MAX_DEPTH} levels deep") from None
            except ValueError:
                decoded = item  # kept as sent: validation reports it is not an object
            else:
                check_value(decoded, "param data", depth=depth + 1)
            item = decoded
        events.append(item)
    return events


def _event_time(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        digits = value.strip()
        return MAX_EVENT_TIME if len(digits) > 20 else int(digits)
    return value if isinstance(value, int) else None


def check_events(events: list[Any]) -> None:
    """Per-event limits: event_name, event_id and order_id lengths, event_time range, size as JSON."""
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            continue  # validation answers Meta's error for it
        where = f"event {index}"
        name = event.get("event_name")
        if isinstance(name, str) and len(name) > MAX_EVENT_NAME_CHARS:
            raise BadRequest(f"{where}: event_name is longer than {MAX_EVENT_NAME_CHARS} characters")
        event_id = event.get("event_id")
        if event_id is not None and len(str(event_id)) > MAX_ID_CHARS:
            raise BadRequest(f"{where}: event_id is longer than {MAX_ID_CHARS} characters")
        custom = event.get("custom_data")
        order_id = custom.get("order_id") if isinstance(custom, Mapping) else None
        if order_id is not None and len(str(order_id)) > MAX_ID_CHARS:
            raise BadRequest(f"{where}: custom_data.order_id is longer than {MAX_ID_CHARS} characters")
        seconds = _event_time(event.get("event_time"))
        in_seconds = seconds is not None and 0 <= seconds < MAX_EVENT_TIME
        in_milliseconds = seconds is not None and MILLISECONDS_FROM <= seconds < MAX_EVENT_TIME * 1000
        if seconds is not None and not (in_seconds or in_milliseconds):
            raise BadRequest(f"{where}: event_time must be unix seconds between 0 and {MAX_EVENT_TIME - 1}")
        if len(json.dumps(event, default=str)) > MAX_EVENT_BYTES:  # ASCII: one character, one byte
            raise BadRequest(f"{where} is larger than {MAX_EVENT_BYTES} bytes as JSON")
