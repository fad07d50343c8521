"""Typed errors of the Graph API, parsed from Meta's error body.

Meta answers errors with ``{"error": {"message", "type", "code", "error_subcode", "error_user_title",
"error_user_msg", "fbtrace_id", "is_transient"}}``. ``error_from_response`` turns such a body (or a bare
5xx, or no answer at all) into one of the classes below so that callers branch on the class, not on
numbers: a ``TokenInvalidError`` needs a person, a ``RateLimitedError`` needs patience, an
``InvalidParameterError`` needs a repair, a ``TransientError``/``MetaUnreachableError`` needs a retry.

Messages are built from Meta's text only; the client scrubs its own token out of them before raising
(Meta echoes a malformed token back in some 190 messages).
"""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal["token_invalid", "permission", "rate_limited", "invalid_parameter", "transient",
                    "unreachable", "other"]
# The kinds ``tools.checks.types.MetaReadError`` knows.
ReadErrorKind = Literal["token_invalid", "permission", "rate_limited", "unreachable", "other"]

TOKEN_CODES = frozenset({102, 104, 190})  # 104: no token given; 102: session; 190: invalid/expired
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80004})
TRANSIENT_CODES = frozenset({1, 2})
SUBCODE_TOKEN_EXPIRED = 463
SUBCODE_PASSWORD_CHANGED = 460


class MetaApiError(Exception):
    """A failed Graph API call. ``code``/``subcode`` are Meta's; ``http_status`` is None when no answer came.

    ``attempts`` is how many requests were made before giving up (set by the client).
    """

    kind: ErrorKind = "other"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        user_title: str | None = None,
        user_msg: str | None = None,
        fbtrace_id: str | None = None,
        is_transient: bool = False,
        http_status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.message = message
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.user_title = user_title
        self.user_msg = user_msg
        self.fbtrace_id = fbtrace_id
        self.is_transient = is_transient
        self.http_status = http_status
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"HTTP {self.http_status}" if self.http_status is not None else "no HTTP answer"
        code = "" if self.code is None else f" code {self.code}" + (
            f"/{self.subcode}" if self.subcode is not None else "")
        title = f" [{self.user_title}]" if self.user_title else ""
        trace = f" (fbtrace_id {self.fbtrace_id})" if self.fbtrace_id else ""
        return f"Meta API error ({where}{code}): {self.message}{title}{trace}"

    @property
    def error_key(self) -> str:
        """"code/subcode" as the ledger counts errors (subcode may be empty: "190/")."""
        if self.code is None:
            return f"http{self.http_status}" if self.http_status is not None else "unreachable"
        return f"{self.code}/{'' if self.subcode is None else self.subcode}"

    @property
    def read_error_kind(self) -> ReadErrorKind:
        """This error as a ``MetaReadError.kind`` (a 5xx or transient error counts as unreachable)."""
        if self.kind in ("token_invalid", "permission", "rate_limited", "unreachable"):
            return self.kind
        return "unreachable" if self.kind == "transient" else "other"

    def to_graph_error(self) -> dict[str, Any]:
        """The error body as Meta shapes it (for a relay that hands Meta's answer back to its caller)."""
        error: dict[str, Any] = {"message": self.message, "type": self.error_type or "OAuthException",
                                 "code": self.code if self.code is not None else 2}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.is_transient:
            error["is_transient"] = True
        if self.user_title:
            error["error_user_title"] = self.user_title
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        if self.fbtrace_id:
            error["fbtrace_id"] = self.fbtrace_id
        return {"error": error}


class TokenInvalidError(MetaApiError):
    """Code 190 (subcode 463: expired, 460: password changed), or no usable token (102, 104)."""

    kind: ErrorKind = "token_invalid"

    @property
    def expired(self) -> bool:
        return self.subcode == SUBCODE_TOKEN_EXPIRED


class PermissionDeniedError(MetaApiError):
    """Codes 10 and 200-299: the token is valid but lacks a permission on this object."""

    kind: ErrorKind = "permission"


class InvalidParameterError(MetaApiError):
    """Code 100: the request itself is wrong (2804003 too old, 2804001 bad fbc, 33 no such object...).

    For events, Meta rejected the whole batch: nothing was processed.
    """

    kind: ErrorKind = "invalid_parameter"


class RateLimitedError(MetaApiError):
    """Codes 4 (app), 17 (user), 32 (page), 613 (calls), 80004 (too many calls to this ad account)."""

    kind: ErrorKind = "rate_limited"
    retryable = True


class TransientError(MetaApiError):
    """Codes 1 and 2, ``is_transient`` errors and any HTTP 5xx: retrying later should work."""

    kind: ErrorKind = "transient"
    retryable = True


class MetaUnreachableError(MetaApiError):
    """No answer from Meta: timeout or connection error (after the client's retries)."""

    kind: ErrorKind = "unreachable"
    retryable = True


def error_from_response(status: int, body: Any, *, retry_after: float | None = None) -> MetaApiError:
    """Map an HTTP status and a (parsed JSON, or None) body to the matching error class."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        cls: type[MetaApiError] = (TransientError if status >= 500
                                   else RateLimitedError if status == 429 else MetaApiError)
        return cls(f"HTTP {status} without a Graph API error body", http_status=status,
                   retry_after=retry_after)
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    is_transient = bool(error.get("is_transient"))
    fields: dict[str, Any] = {
        "code": code, "subcode": subcode, "error_type": _as_str(error.get("type")),
        "user_title": _as_str(error.get("error_user_title")),
        "user_msg": _as_str(error.get("error_user_msg")),
        "fbtrace_id": _as_str(error.get("fbtrace_id")), "is_transient": is_transient, "http_status": status,
        "retry_after": retry_after,
    }
    message = _as_str(error.get("message")) or "unknown error"
    return _class_for(code, status, is_transient)(message, **fields)


def _class_for(code: int | None, status: int, is_transient: bool) -> type[MetaApiError]:
    if code in TOKEN_CODES:
        return TokenInvalidError
    if code in RATE_LIMIT_CODES:
        return RateLimitedError
    if code == 100:
        return InvalidParameterError
    if code == 10 or (code is not None and 200 <= code <= 299):
        return PermissionDeniedError
    if code in TRANSIENT_CODES or is_transient or status >= 500:
        return TransientError
    return MetaApiError


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)
