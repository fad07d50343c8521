"""The one error the LLM layer raises, so a caller can fall back to the offline reasoner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # imported where an error is mapped: see agent.llm.adapter
    import openai

UnavailableReason = Literal[
    "timeout", "connection", "auth", "rate_limited", "server_error", "bad_request", "not_found",
    "http_error", "bad_response",
]


class LLMUnavailable(RuntimeError):
    """The LLM could not give an answer (after the client's own retries).

    ``reason`` is one short code; the message never holds prompt text, response bodies or keys."""

    def __init__(self, reason: UnavailableReason, *, status_code: int | None = None) -> None:
        self.reason: UnavailableReason = reason
        self.status_code = status_code
        detail = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"LLM unavailable: {reason}{detail}")


def unavailable_from(exc: openai.OpenAIError) -> LLMUnavailable:
    """Maps an ``openai`` exception to :class:`LLMUnavailable`."""
    import openai

    # Order matters: APITimeoutError is an APIConnectionError, and the status errors share a base.
    if isinstance(exc, openai.APITimeoutError):
        return LLMUnavailable("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable("connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason: UnavailableReason
        if status in (401, 403):
            reason = "auth"
        elif status == 429:
            reason = "rate_limited"
        elif status >= 500:
            reason = "server_error"
        elif status == 404:
            reason = "not_found"
        elif status in (400, 422):
            reason = "bad_request"
        else:
            reason = "http_error"
        return LLMUnavailable(reason, status_code=status)
    return LLMUnavailable("bad_response")
