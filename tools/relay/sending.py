"""Sending one batch with the optional request parameters a caller gave (``partner_agent`` etc.)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tools.meta.client import GraphClient, SendResult

# Request parameters a caller may send beside ``data`` that the relay passes on to Meta unchanged.
PASSTHROUGH_PARAMS = ("test_event_code", "partner_agent", "namespace_id", "upload_id", "upload_tag",
                      "upload_source", "appsecret_proof")


def passthrough(params: Mapping[str, Any]) -> dict[str, str]:
    """The pass-through parameters present (non-empty) in a request's parameters, as strings."""
    return {name: str(params[name]) for name in PASSTHROUGH_PARAMS if params.get(name) not in (None, "")}


def send_batch(client: GraphClient, pixel_id: str, events: Sequence[Mapping[str, Any]],
               params: Mapping[str, str]) -> SendResult:
    """``client.send_events`` plus the pass-through parameters; raises ``MetaApiError`` like it."""
    extra = {name: value for name, value in params.items() if name != "test_event_code"}
    return client.send_events(pixel_id, events, test_event_code=params.get("test_event_code"),
                              extra_params=extra or None)
