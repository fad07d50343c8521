"""A process that dies half-way through sending to Meta, for the fix runs' crash-and-resume tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools.meta.client import GraphClient


def send_then_die(crash: str) -> Callable[..., Any]:
    """A ``GraphClient.send_events`` that dies on its second call: after Meta took the chunk
    (``crash == "after_send"``: the process dies before recording it) or before sending it."""
    real_send = GraphClient.send_events
    calls = 0

    def send(self: GraphClient, pixel_id: str, events: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            if crash == "after_send":
                real_send(self, pixel_id, events, **kw)  # Meta has it; the process dies before recording
            raise RuntimeError("process killed")
        return real_send(self, pixel_id, events, **kw)

    return send
