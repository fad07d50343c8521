"""Meta's ``/{pixel}/events`` wire format, shared by the relay (production) and the simulator (tests).

Reading a request the way the Graph API does: parameters from the query string and the body (JSON,
form-urlencoded as the official SDK sends, or multipart as ``curl -F`` sends), the token from the
``Authorization`` header (``Bearer`` or ``OAuth``) or an ``access_token`` parameter, and ``data`` as a
JSON array of event objects or of JSON-encoded event strings. Answering the way it does: Graph error
bodies (``{"error": {message, type, code, error_subcode, is_transient, fbtrace_id, ...}}``).

Both sides import from here so that the relay never depends on the simulator and the two cannot
drift apart on what a request or an error looks like.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Protocol

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from tools.meta.validate import EventProblem

# Meta's wording where known (docs/meta-api.md and public error captures); the rest is ours.
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


class BadRequest(ValueError):
    """A request Meta would refuse with code 100 before looking at the events."""


class HasHeaders(Protocol):
    @property
    def headers(self) -> Headers: ...


def access_token(request: HasHeaders, params: Mapping[str, Any]) -> str | None:
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


def multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a ``multipart/form-data`` body (files read as text)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise BadRequest("the multipart body could not be parsed")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)  # bytes, or None when empty
        payload = payload if isinstance(payload, bytes) else b""
        fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields


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
