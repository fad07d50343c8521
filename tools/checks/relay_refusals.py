"""Relay check: requests the relay refused for this pixel in the audited hour (a token that is not the
pixel's nor one of its relay keys, a pixel that is not configured, a sender over its rate limit).

Always ``info``: the refused events were never stored, audited or sent, so nothing about the pixel's
data is wrong; the finding says who tried (the sender's address, a server's, never a customer's) so
that an operator can tell a misconfigured sender of their own from a stranger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from tools.checks.types import AuditInputs, Finding, make_finding

MAX_EVIDENCE = 10
REASON_TEXT = {"bad_token": "token not accepted", "unconfigured_pixel": "pixel not configured",
               "rate_limited": "over the rate limit"}


@dataclass(frozen=True)
class RelayRefusalCount:
    """Requests the relay refused for the pixel in one hour of arrival, by sender address and reason."""

    hour: datetime
    source: str
    reason: str
    requests: int
    events: int = 0


def check_relay_refusals(inputs: AuditInputs) -> list[Finding]:
    rows = [row for row in inputs.relay_refusals if inputs.window_start <= row.hour < inputs.window_end]
    requests = sum(row.requests for row in rows)
    if not requests:
        return []
    events = sum(row.events for row in rows)
    by_source: Counter[str] = Counter()
    by_line: Counter[tuple[str, str]] = Counter()
    for row in rows:
        by_source[row.source] += row.requests
        by_line[(row.source, row.reason)] += row.requests
    top_source, top_count = by_source.most_common(1)[0]
    senders = ", ".join(f"{source} ({count})" for source, count in by_source.most_common(3))
    return [make_finding(
        inputs, check="relay", code="relay.refused_requests", severity="info",
        summary=(f"The relay refused {requests} request(s) carrying {events} event(s) for this pixel; "
                 f"senders: {senders}. Nothing from them was stored or sent to Meta."),
        metrics={"refused_requests": requests, "refused_events": events, "sources": len(by_source),
                 "top_source": top_source, "top_source_requests": top_count},
        evidence=[f"{source}: {count} request(s) refused, {REASON_TEXT.get(reason, reason)}"
                  for (source, reason), count in by_line.most_common(MAX_EVIDENCE)],
    )]
