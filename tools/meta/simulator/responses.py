"""The failures a fault produces, shaped as the Graph API shapes them (error bodies: ``tools.meta.wire``)."""

from __future__ import annotations

import asyncio

from starlette.responses import PlainTextResponse, Response

from tools.meta.simulator.state import Fault
from tools.meta.wire import RATE_LIMITS, graph_error, token_expired


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
