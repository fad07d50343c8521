"""Reading the simulator's requests: the whole body at once (the relay reads with limits, in
``tools.relay.limits``) and the time parameters of ``/stats``. The wire format itself (token,
``data``, multipart fields, errors) is ``tools.meta.wire``, shared with the relay."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from tools.meta.wire import BadRequest, multipart_fields
from tools.timeutil import as_utc, from_unix, parse_iso


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
        params.update(multipart_fields(content_type, body))
    else:  # form-urlencoded, and what clients send without a content type
        params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


def parse_time_param(value: Any) -> datetime:
    """A ``start_time``/``end_time`` as unix seconds or ISO-8601."""
    text = str(value).strip()
    try:
        if text.lstrip("-").isdigit():
            return from_unix(int(text))
        return as_utc(parse_iso(text))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(f"invalid time parameter {text[:40]!r}") from exc
