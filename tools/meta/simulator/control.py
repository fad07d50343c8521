"""Scripting and inspection endpoints of the simulator, under ``/_sim/`` (no token needed):

- ``GET|POST /_sim/clock``          ``{"now": ISO | null}`` (null: real time)
- ``GET|POST /_sim/state``          GET: a summary; POST: load a state file body (replaces everything)
- ``POST /_sim/reset``              forget pixels, received events and faults
- ``POST /_sim/browser``            ``{"pixel_id", "hours": [{"hour", "event_name", "count",
  "with_event_id"}]}`` (sets those hours)
- ``POST /_sim/server``             ``{"pixel_id", "hours": [...server_hours rows of the state file]}``
- ``POST /_sim/tokens``             ``{"valid": [...], "expired": [...]}`` (added to the known tokens)
- ``GET|POST|DELETE /_sim/faults``  POST ``{"mode", "count", "endpoint", "code", "subcode", "retry_after",
  "delay_seconds"}``: the next ``count`` matching requests fail that way; DELETE disarms all
- ``GET /_sim/received?pixel_id=``  events received (oldest first)
- ``GET|POST /_sim/usage``          POST ``{"latency_ms", "pixel_latency_ms": {pixel: ms}, "call_budget",
  "window_seconds", "reset"}`` (only the keys given change): latency and rate limits (``usage``)
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tools.meta.simulator.state import FAULT_ENDPOINTS, FAULT_MODES, Fault, SimState
from tools.timeutil import parse_iso, to_iso


def routes() -> list[Route]:
    return [
        Route("/_sim/clock", clock, methods=["GET", "POST"]),
        Route("/_sim/state", state_endpoint, methods=["GET", "POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/browser", browser_hours, methods=["POST"]),
        Route("/_sim/server", server_hours, methods=["POST"]),
        Route("/_sim/tokens", tokens, methods=["POST"]),
        Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sim/received", received, methods=["GET"]),
        Route("/_sim/usage", usage, methods=["GET", "POST"]),
    ]


def _sim(request: Request) -> SimState:
    sim: SimState = request.app.state.sim  # set by build_simulator_app
    return sim


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=400)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _BadBody("body must be JSON") from exc
    if not isinstance(body, dict):
        raise _BadBody("body must be a JSON object")
    return body


class _BadBody(ValueError):
    pass


async def clock(request: Request) -> Response:
    state = _sim(request)
    if request.method == "POST":
        try:
            now = (await _json(request)).get("now")
            state.set_now(parse_iso(now) if now else None)
        except (_BadBody, ValueError, TypeError) as exc:
            return _bad(f"invalid clock: {exc}")
    return JSONResponse({"now": to_iso(state.current_time())})


async def state_endpoint(request: Request) -> Response:
    state = _sim(request)
    if request.method == "POST":
        try:
            state.replace_with(SimState.from_dict(await _json(request), strict=state.strict))
        except (_BadBody, KeyError, ValueError, TypeError, AttributeError) as exc:
            return _bad(f"invalid state: {exc}")
    return JSONResponse(state.summary())


async def reset(request: Request) -> Response:
    _sim(request).reset()
    return JSONResponse({"ok": True})


async def browser_hours(request: Request) -> Response:
    return await _hours(request, _sim(request).set_browser_hours)


async def server_hours(request: Request) -> Response:
    return await _hours(request, _sim(request).add_server_hours)


async def _hours(request: Request, apply: Any) -> Response:
    try:
        body = await _json(request)
        apply(str(body["pixel_id"]), list(body.get("hours") or []))
    except (_BadBody, KeyError, ValueError, TypeError) as exc:
        return _bad(f"invalid hours: {exc}")
    return JSONResponse({"ok": True})


async def tokens(request: Request) -> Response:
    state = _sim(request)
    try:
        body = await _json(request)
    except _BadBody as exc:
        return _bad(str(exc))
    state.add_tokens(valid=[str(token) for token in body.get("valid") or []],
                     expired=[str(token) for token in body.get("expired") or []])
    return JSONResponse({"ok": True})


async def faults(request: Request) -> Response:
    state = _sim(request)
    if request.method == "DELETE":
        state.clear_faults()
    elif request.method == "POST":
        try:
            body = await _json(request)
            fault = fault_from_dict(body)
        except (_BadBody, ValueError, TypeError) as exc:
            return _bad(f"invalid fault: {exc}")
        state.add_fault(fault)
    return JSONResponse({"faults": state.armed_faults()})


def fault_from_dict(body: dict[str, Any]) -> Fault:
    """A ``Fault`` from the ``/_sim/faults`` body (``count`` defaults to 1, ``endpoint`` to ``*``)."""
    mode = body.get("mode")
    endpoint = body.get("endpoint", "*")
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
    if endpoint not in FAULT_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")
    count = int(body.get("count", 1))
    if count < 1:
        raise ValueError("count must be at least 1")
    return Fault(
        mode=mode, remaining=count, endpoint=endpoint,
        code=int(body["code"]) if body.get("code") is not None else None,
        subcode=int(body["subcode"]) if body.get("subcode") is not None else None,
        retry_after=float(body["retry_after"]) if body.get("retry_after") is not None else None,
        delay_seconds=float(body.get("delay_seconds", 5.0)),
    )


async def received(request: Request) -> Response:
    pixel_id = request.query_params.get("pixel_id")
    return JSONResponse({"data": _sim(request).received(pixel_id)})


async def usage(request: Request) -> Response:
    state = _sim(request)
    if request.method == "POST":
        try:
            state.usage.configure(await _json(request))
        except (_BadBody, ValueError, TypeError, AttributeError) as exc:
            return _bad(f"invalid usage settings: {exc}")
    return JSONResponse(state.usage.summary())
