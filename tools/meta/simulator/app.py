"""The Graph API simulator as a Starlette app: the three Meta endpoints capi-agent uses, plus the
``/_sim/`` scripting endpoints (``tools.meta.simulator.control``).

- ``POST /{ver}/{pixel_id}/events``: Conversions API. Token, then Meta's validation rules
  (``tools.meta.validate``) against the simulator clock: any error rejects the whole batch (HTTP 400,
  code 100 + subcode) and nothing is counted; otherwise ``{"events_received", "messages", "fbtrace_id"}``.
- ``GET /{ver}/{pixel_id}/stats?aggregation=event&event_source=WEB_ONLY|SERVER_ONLY&start_time&end_time``:
  hourly buckets, at most 7 days (else code 100), paged (``limit``, ``after`` cursor, ``paging.next``).
- ``GET /{ver}/dataset_quality?dataset_id=..&fields=web{...}``: the model in ``quality.py``.

Faults armed through ``/_sim/faults`` are served before anything else, as a real outage would be.
Every Graph API call is held back the configured latency and answered with Meta's usage headers;
with a call budget, calls beyond it are throttled (code 80004): see ``usage``.
Request lines are logged at INFO with tokens redacted.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.checks.types import Source
from tools.meta.redact import redact
from tools.meta.simulator import control
from tools.meta.simulator.params import parse_time_param, read_params
from tools.meta.simulator.quality import web_quality
from tools.meta.simulator.responses import fault_response
from tools.meta.simulator.state import SimState
from tools.meta.validate import validate_batch
from tools.meta.wire import (
    RATE_LIMITS,
    BadRequest,
    access_token,
    bad_appsecret_proof,
    batch_rejected,
    decode_data,
    fbtrace_id,
    graph_error,
    invalid_parameter,
    token_expired,
    token_invalid,
    token_missing,
    unknown_object,
)
from tools.timeutil import DAY, HOUR, floor_hour

logger = logging.getLogger("capi_agent.sim_meta")

MAX_STATS_RANGE = 7 * DAY
DEFAULT_PAGE_SIZE = 25
LOGGED_PARAMS = frozenset({"aggregation", "event_source", "start_time", "end_time", "dataset_id", "limit",
                           "after", "pixel_id"})
SOURCES: dict[str, Source | None] = {"WEB_ONLY": "browser", "SERVER_ONLY": "server", "WEB_AND_SERVER": None,
                                     "ALL": None}


def build_simulator_app(state: SimState | None = None) -> Starlette:
    """A fresh simulator app over ``state`` (default: empty state, real time, token ``sim-token``)."""
    sim_state = state if state is not None else SimState()
    app = Starlette(routes=[
        *control.routes(),
        Route("/{version}/dataset_quality", dataset_quality, methods=["GET"]),
        Route("/{version}/{pixel_id}/events", post_events, methods=["POST"]),
        Route("/{version}/{pixel_id}/stats", get_stats, methods=["GET"]),
    ])
    app.state.sim = sim_state
    app.add_middleware(_Usage)
    app.add_middleware(_RequestLog)
    return app


async def post_events(request: Request) -> Response:
    state: SimState = request.app.state.sim
    pixel_id = request.path_params["pixel_id"]
    refusal = await _gate(request, "events")
    if refusal is not None:
        return refusal
    params = request.state.params
    if state.strict and not state.knows_pixel(pixel_id):
        return unknown_object(pixel_id)
    try:
        events = decode_data(params.get("data"))
    except BadRequest as exc:
        return invalid_parameter(f"(#100) {exc}")
    problems = validate_batch(events, now=state.current_time())
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        return batch_rejected(errors[0])
    test_event_code = params.get("test_event_code") or None
    state.record_events(pixel_id, events, test_event_code=test_event_code)
    return JSONResponse({"events_received": len(events), "messages": [], "fbtrace_id": fbtrace_id()})


async def get_stats(request: Request) -> Response:
    state: SimState = request.app.state.sim
    pixel_id = request.path_params["pixel_id"]
    refusal = await _gate(request, "stats")
    if refusal is not None:
        return refusal
    params = request.state.params
    if state.strict and not state.knows_pixel(pixel_id):
        return unknown_object(pixel_id)
    if params.get("aggregation", "event") != "event":
        return invalid_parameter("(#100) The simulator supports only aggregation=event")
    source_param = str(params.get("event_source") or "ALL").upper()
    if source_param not in SOURCES:
        return invalid_parameter("(#100) event_source must be one of WEB_ONLY, SERVER_ONLY")
    try:
        end = (parse_time_param(params["end_time"]) if params.get("end_time")
               else floor_hour(state.current_time()) + HOUR)
        start = parse_time_param(params["start_time"]) if params.get("start_time") else end - DAY
        offset = _decode_cursor(params.get("after"))
        limit = max(1, min(int(params.get("limit") or DEFAULT_PAGE_SIZE), 500))
    except (BadRequest, ValueError) as exc:
        return invalid_parameter(f"(#100) {exc}")
    if end <= start:
        return invalid_parameter("(#100) end_time must be after start_time")
    if end - start > MAX_STATS_RANGE:
        return invalid_parameter("(#100) The time range between start_time and end_time must be 7 days "
                                 "or less")
    buckets = state.stats(pixel_id, SOURCES[source_param], start, end)
    page = buckets[offset:offset + limit]
    data = [{"aggregation": "event", "start_time": hour.strftime("%Y-%m-%dT%H:%M:%S+0000"),
             "data": [{"value": name, "count": count} for name, count in sorted(counts.items())]}
            for hour, counts in page]
    paging: dict[str, Any] = {}
    if len(buckets) > limit:
        paging["cursors"] = {"before": _encode_cursor(offset), "after": _encode_cursor(offset + len(page))}
        if offset + len(page) < len(buckets):
            paging["next"] = _next_url(request, _encode_cursor(offset + len(page)))
    return JSONResponse({"data": data, "paging": paging})


async def dataset_quality(request: Request) -> Response:
    state: SimState = request.app.state.sim
    refusal = await _gate(request, "dataset_quality")
    if refusal is not None:
        return refusal
    params = request.state.params
    dataset_id = str(params.get("dataset_id") or "")
    if not dataset_id:
        return invalid_parameter("(#100) The parameter dataset_id is required")
    snapshot = state.snapshot(dataset_id)
    if snapshot is None:
        if state.strict:
            return unknown_object(dataset_id)
        return JSONResponse({"web": []})
    web = web_quality(*snapshot, now=state.current_time())
    wanted = requested_web_fields(params.get("fields"))
    if wanted is not None:
        web = [{key: value for key, value in item.items() if key == "event_name" or key in wanted}
               for item in web]
    return JSONResponse({"web": web})


def requested_web_fields(fields: Any) -> set[str] | None:
    """Top-level names inside ``web{...}`` of a ``fields`` parameter; None means everything."""
    text = str(fields or "")
    start = text.find("web{")
    if start < 0:
        return None
    names, depth, current = set(), 0, ""
    for char in text[start + 4:]:
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    names.add(current.strip())
    return {name for name in names if name} or None


async def _gate(request: Request, endpoint: str) -> Response | None:
    """Faults, version, parameters, token and appsecret_proof; returns the refusal, if any."""
    state: SimState = request.app.state.sim
    fault = state.take_fault(endpoint)
    if fault is not None:
        return await fault_response(fault)
    version = request.path_params.get("version", "")
    if not (version.startswith("v") and version[1:].replace(".", "").isdigit()):
        return graph_error(400, "Unknown path components: /" + version[:20], code=2500)
    try:
        request.state.params = await read_params(request)
    except BadRequest as exc:
        return invalid_parameter(f"(#100) {exc}")
    token = access_token(request, request.state.params)
    if not token:
        return token_missing()
    status = state.token_status(token)
    if status == "expired":
        return token_expired()
    if status != "valid":
        return token_invalid()
    if state.app_secret:
        expected = hmac.new(state.app_secret.encode(), token.encode(), sha256).hexdigest()
        if not hmac.compare_digest(expected, str(request.state.params.get("appsecret_proof", ""))):
            return bad_appsecret_proof()
    return None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int:
    if not cursor:
        return 0
    text = str(cursor)
    try:
        return max(0, int(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()))
    except ValueError as exc:
        raise BadRequest("invalid paging cursor") from exc


def _next_url(request: Request, after: str) -> str:
    # Never echo the token back into a URL (Meta does; our client strips it, others might log it).
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "access_token")]
    query.append(("after", after))
    return str(request.url.replace(query=urlencode(query)))


class _Usage:
    """Latency, usage headers and throttling for Graph API paths (``/_sim/`` is left alone)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path or path.startswith("/_sim/"):
            await self.app(scope, receive, send)
            return
        state: SimState = scope["app"].state.sim
        parts = path.strip("/").split("/")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        pixel_id = query.get("dataset_id") if parts[-1:] == ["dataset_quality"] else (
            parts[1] if len(parts) >= 3 else None)
        delay = state.usage.delay_seconds(pixel_id)
        if delay > 0:
            await asyncio.sleep(delay)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        token = credential.strip() if scheme.lower() in ("bearer", "oauth") else query.get("access_token")
        allowed, usage_headers = state.usage.admit(token)
        if not allowed:
            message, _ = RATE_LIMITS[80004]
            refusal = graph_error(400, message, code=80004, subcode=2446079, is_transient=True,
                                  headers=usage_headers)
            await refusal(scope, receive, send)
            return
        extra = [(name.lower().encode(), value.encode()) for name, value in usage_headers.items()]

        async def send_with_usage(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_usage)


class _RequestLog:
    """Logs ``METHOD path?query -> status`` at INFO, with tokens redacted (uvicorn's access log is off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_note)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        # Only known-harmless values are logged: a caller may put events (PII) or its token in a query.
        shown = "&".join(f"{key}={value if key in LOGGED_PARAMS else '...'}" for key, value in query)
        target = scope.get("path", "") + (f"?{shown}" if shown else "")
        logger.info("%s %s -> %s", scope.get("method"), redact(target), status)
