"""Answers shaped as the Graph API shapes them: error bodies, and the failures a fault produces."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from tools.meta.simulator.state import Fault
from tools.meta.validate import EventProblem

# Meta's wording where known (meta-capi-facts.md and public error captures); the rest is ours.
USER_TITLES = {
    2804003: "Event Timestamp Too Old",
    2804001: "Click ID Incorrectly Formatted",
    2804050: "Insufficient Customer Information Parameters",
}
RATE_LIMITS: dict[int, tuple[str, int | None]] = {
    4: ("(#4) Application request limit reached", None),
    17: ("(#17) User request limit reached", 2446079),
    613: ("(#613) Calls to this api have exceeded the rate limit.", 1487742),
    80004: ("(#80004) There have been too many calls to this ad-account. Wait a bit and try again.", None),
}


def fbtrace_id() -> str:
    return secrets.token_urlsafe(12)


def graph_error(
    status: int,
    message: str,
    *,
    code: int,
    subcode: int | None = None,
    error_type: str = "OAuthException",
    user_title: str | None = None,
    user_msg: str | None = None,
    is_transient: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = is_transient
    if user_title:
        error["error_user_title"] = user_title
    if user_msg:
        error["error_user_msg"] = user_msg
    error["fbtrace_id"] = fbtrace_id()
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def invalid_parameter(message: str, *, subcode: int | None = None, user_title: str | None = None,
                      user_msg: str | None = None) -> JSONResponse:
    return graph_error(400, message, code=100, subcode=subcode, user_title=user_title, user_msg=user_msg)


def batch_rejected(problem: EventProblem) -> JSONResponse:
    """Meta's answer when one event makes the whole request fail."""
    title = USER_TITLES.get(problem.meta_subcode or 0, "Invalid parameter")
    return graph_error(400, "Invalid parameter", code=problem.meta_code, subcode=problem.meta_subcode,
                       user_title=title, user_msg=problem.message)


def unknown_object(object_id: str) -> JSONResponse:
    return graph_error(
        400,
        f"Unsupported get request. Object with ID '{object_id[:40]}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation.",
        code=100, subcode=33, error_type="GraphMethodException",
    )


def token_missing() -> JSONResponse:
    return graph_error(400, "An access token is required to request this resource.", code=104)


def token_invalid() -> JSONResponse:
    return graph_error(400, "Invalid OAuth access token - Cannot parse access token", code=190)


def token_expired() -> JSONResponse:
    return graph_error(400, "Error validating access token: Session has expired.", code=190, subcode=463,
                       user_title="Session expired",
                       user_msg="Your session has expired. Please log in again.")


def bad_appsecret_proof() -> JSONResponse:
    return graph_error(400, "Invalid appsecret_proof provided in the API argument", code=100,
                       error_type="GraphMethodException")


async def fault_response(fault: Fault) -> Response:
    """The failure an armed fault produces (a timeout holds the answer back ``delay_seconds``)."""
    if fault.mode == "timeout":
        await asyncio.sleep(fault.delay_seconds)
        return PlainTextResponse("Gateway Timeout", status_code=504)
    if fault.mode == "unavailable":
        # What a load balancer in front of the Graph API answers: no Graph error body.
        return PlainTextResponse("Service Unavailable", status_code=503)
    if fault.mode == "transient":
        code = fault.code if fault.code in (1, 2) else 2
        message = ("An unknown error occurred" if code == 1
                   else "An unexpected error has occurred. Please retry your request later.")
        return graph_error(500, message, code=code, subcode=fault.subcode, is_transient=True)
    if fault.mode == "rate_limit":
        code = fault.code if fault.code in RATE_LIMITS else 4
        message, subcode = RATE_LIMITS[code]
        headers = {"X-App-Usage": '{"call_count":100,"total_cputime":12,"total_time":30}'}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return graph_error(400, message, code=code, subcode=fault.subcode or subcode, is_transient=True,
                           headers=headers)
    # token_invalid
    if fault.subcode == 463:
        return token_expired()
    return graph_error(400, "Error validating access token: The session has been invalidated because the "
                       "user changed their password or Facebook has changed the session for security "
                       "reasons.", code=190, subcode=fault.subcode if fault.subcode is not None else 460)
