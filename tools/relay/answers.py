"""What the relay answers its caller: Meta's own answer when Meta gave one, otherwise an answer shaped
exactly as Meta (or the simulator, which follows Meta) would shape it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from tools.meta.client import SendResult
from tools.meta.errors import MetaApiError
from tools.meta.validate import EventProblem
from tools.meta.wire import batch_rejected, graph_error, invalid_parameter


@dataclass(frozen=True)
class RelayAnswer:
    """HTTP status and JSON body handed back to the caller."""

    status: int
    body: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        """The Graph error object ({} on success)."""
        error = self.body.get("error")
        return error if isinstance(error, dict) else {}


def _from_response(response: JSONResponse) -> RelayAnswer:
    return RelayAnswer(status=response.status_code, body=json.loads(bytes(response.body)))


def rejected_batch(problem: EventProblem) -> RelayAnswer:
    """Meta's 400 for a batch it rejects whole (code 100 + subcode, user title/message, fbtrace_id)."""
    return _from_response(batch_rejected(problem))


def bad_request(message: str) -> RelayAnswer:
    """Meta's 400 code 100 for a request it refuses before looking at events."""
    return _from_response(invalid_parameter(f"(#100) {message}"))


def accepted(result: SendResult) -> RelayAnswer:
    return RelayAnswer(status=200, body={"events_received": result.events_received,
                                         "messages": list(result.messages), "fbtrace_id": result.fbtrace_id})


def queued(count: int) -> RelayAnswer:
    """Meta is unavailable: a success answer so the caller does not resend (and create duplicates)."""
    return RelayAnswer(status=200, body={
        "events_received": count,
        "messages": [f"capi-agent: Meta unavailable, {count} events queued for delivery"],
        "fbtrace_id": None})


def unanswered(count: int) -> RelayAnswer:
    """Meta did not answer in time: it may have the events, so they are neither re-sent nor refused (a
    retry by the sender could count them twice); the ledger reports them as uncertain."""
    return RelayAnswer(status=200, body={
        "events_received": count,
        "messages": [f"capi-agent: Meta did not answer in time; {count} events may have been received and "
                     "are not re-sent (reported as uncertain)"],
        "fbtrace_id": None})


def no_token() -> RelayAnswer:
    """Nothing to forward with (a relay key for a pixel with no Meta token configured): a transient
    error, so the sender keeps the events and retries, rather than a "queued" the relay could not keep."""
    return _from_response(graph_error(
        503, "capi-agent: no Meta access token is configured for this pixel; the events were not accepted, "
        "retry later", code=2, is_transient=True))


def meta_error(exc: MetaApiError) -> RelayAnswer:
    """Meta's error handed back with Meta's status (400 when no answer came, as Graph errors are)."""
    status = exc.http_status if exc.http_status is not None and exc.http_status >= 400 else 400
    return RelayAnswer(status=status, body=exc.to_graph_error())
