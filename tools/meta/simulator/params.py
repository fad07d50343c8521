"""Reading a request the way the Graph API does: parameters from the query string and the body (JSON,
form-urlencoded as the official SDK sends, or multipart as ``curl -F`` sends), the token from the
``Authorization`` header (``Bearer`` or ``OAuth``) or an ``access_token`` parameter, and ``data`` as a
JSON array of event objects or of JSON-encoded event strings."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from tools.timeutil import as_utc, from_unix, parse_iso


class BadRequest(ValueError):
    """A request Meta would refuse with code 100 before looking at the events."""


async def read_params(request: Request) -> dict[str, Any]:
    """Query parameters merged with body parameters (the body wins on a clash)."""
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return params
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "application/json":
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise BadRequest("the JSON body could not be parsed") from exc
        if not isinstance(parsed, dict):
            raise BadRequest("the JSON body must be an object")
        params.update(parsed)
    elif media_type == "multipart/form-data":
        params.update(_multipart_fields(content_type, body))
    else:  # form-urlencoded, and what clients send without a content type
        params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


def access_token(request: Request, params: dict[str, Any]) -> str | None:
    """The token from ``Authorization: Bearer|OAuth <token>``, else from the ``access_token`` parameter."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and credential.strip():
        return credential.strip()
    token = params.get("access_token")
    return str(token) if token else None


def decode_data(value: Any) -> list[Any]:
    """The ``data`` parameter as a list of events; JSON-encoded elements are decoded, others kept as sent
    (validation reports anything that is not an object)."""
    if value is None or value == "":
        raise BadRequest("The parameter data is required")
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadRequest("param data must be a JSON array") from exc
    if not isinstance(value, list):
        raise BadRequest("param data must be an array")
    events = []
    for item in value:
        if isinstance(item, str):
            with contextlib.suppress(ValueError):
                item = json.loads(item)
        events.append(item)
    return events


def parse_time_param(value: Any) -> datetime:
    """A ``start_time``/``end_time`` as unix seconds or ISO-8601."""
    text = str(value).strip()
    try:
        if text.lstrip("-").isdigit():
            return from_unix(int(text))
        return as_utc(parse_iso(text))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(f"invalid time parameter {text[:40]!r}") from exc


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise BadRequest("the multipart body could not be parsed")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields
