"""The in-memory records of a generated shop and how they are written as ingest lines.

A ``ServerEvent`` is one line of ``events.jsonl``: Meta's server event object as the shop sent it,
when the ledger received it, and the delivery attempts made for it. ``BrowserHit`` is one Pixel
event (Meta's browser side only; never in the ledger). ``Order`` is one order the shop took.

Delivery lines carry, besides the ingest fields of docs/design.md §3.1, these documented extras:
``request_id`` (lines sharing it went to Meta in one request), ``batch_size`` (events in that
request), ``attempts`` (total attempts; absent, with ``attempted_at`` null, while the event is
queued and not attempted yet), and ``retries``: the earlier failed
attempts, oldest first, each ``{attempted_at, http_status, error_code, error_subcode}``; the
top-level fields describe the last attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Graph error codes a sender retries (transient, throttling); anything else is final.
RETRYABLE_CODES: frozenset[int] = frozenset({1, 2, 4, 17, 341, 613, 80004})


def to_iso(value: datetime) -> str:
    """ISO-8601 with a Z, whole seconds. Every time in this package is already UTC-aware; this is
    the hot path of writing ~40k lines, so it skips the conversions of ``tools.timeutil.to_iso``."""
    return value.isoformat(timespec="seconds")[:19] + "Z"


@dataclass
class Attempt:
    """One POST to Meta for the request an event was part of."""

    at: datetime
    http_status: int = 200
    error_code: int | None = None
    error_subcode: int | None = None
    fbtrace_id: str = ""
    events_received: int = 1

    @property
    def ok(self) -> bool:
        return self.http_status == 200


@dataclass
class ServerEvent:
    """One server event as the ledger knows it. ``attempts`` None means never sent."""

    true_time: datetime  # when it happened in the shop (event_time before any clock bug)
    event: dict[str, Any]
    received_at: datetime
    request_id: str
    attempts: list[Attempt] | None = field(default_factory=list)
    batch_size: int = 1
    customer: int | None = None
    # Who sent it (the ingest line's ``sender``: user_agent, partner_agent, ...); None: not said.
    sender: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return str(self.event["event_name"])

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].ok  # type: ignore[index]

    @property
    def delivered_at(self) -> datetime | None:
        return self.attempts[-1].at if self.delivered else None  # type: ignore[index]

    def delivery_status(self) -> str | None:
        """delivered | failed | pending, or None when the event was never sent."""
        if self.attempts is None:
            return None
        if not self.attempts:
            return "pending"
        last = self.attempts[-1]
        if last.ok:
            return "delivered"
        return "pending" if last.error_code in RETRYABLE_CODES else "failed"


@dataclass(frozen=True)
class BrowserHit:
    """A Pixel event as Meta's browser side counts it."""

    time: datetime
    event_name: str
    with_event_id: bool


# The keys a shop's order record holds for its customer (what was typed at checkout), as opposed to
# the visit's browser keys (IP, user agent, click and browser ids) that an order does not keep.
ORDER_CUSTOMER_KEYS: tuple[str, ...] = ("em", "ph", "external_id", "fn", "ln", "ct", "st", "zp", "ge", "db",
                                        "country")


@dataclass(frozen=True)
class Order:
    order_id: str
    created_at: datetime
    value: float
    currency: str
    # Hashed customer keys (the ingest's ``user_data``), copied from the order's own Purchase as the
    # shop generated it; None for a guest or an order whose Purchase the server never sent.
    user_data: dict[str, list[str]] | None = None


def order_customer(event: dict[str, Any]) -> dict[str, list[str]] | None:
    """The customer keys of a server event's ``user_data``, copied (injections later rewrite the
    event's lists in place; the shop's order keeps what the customer typed)."""
    user = event.get("user_data") or {}
    keys = {name: list(user[name]) for name in ORDER_CUSTOMER_KEYS if name in user}
    return keys or None


def delivery_line(record: ServerEvent) -> dict[str, Any] | None:
    """The ``delivery`` object of an ingest line (None: leave the key out, never sent)."""
    status = record.delivery_status()
    if status is None:
        return None
    attempts = record.attempts or []
    line: dict[str, Any] = {
        "status": status,
        "request_id": record.request_id,
        "batch_size": record.batch_size,
    }
    if not attempts:
        # Queued, not attempted yet: no attempt fields at all (``attempts`` counts from 1 when present).
        line.update(
            attempted_at=None,
            http_status=None,
            error_code=None,
            error_subcode=None,
            fbtrace_id=None,
            events_received=None,
        )
        return line
    last = attempts[-1]
    line.update(
        attempts=len(attempts),
        attempted_at=to_iso(last.at),
        http_status=last.http_status,
        error_code=last.error_code,
        error_subcode=last.error_subcode,
        fbtrace_id=last.fbtrace_id,
        events_received=last.events_received if last.ok else 0,
    )
    if len(attempts) > 1:
        line["retries"] = [
            {
                "attempted_at": to_iso(a.at),
                "http_status": a.http_status,
                "error_code": a.error_code,
                "error_subcode": a.error_subcode,
            }
            for a in attempts[:-1]
        ]
    return line


def ingest_line(pixel_id: str, record: ServerEvent) -> dict[str, Any]:
    """One ``events.jsonl`` object (docs/design.md §3.1, the event envelope)."""
    line: dict[str, Any] = {
        "pixel_id": pixel_id,
        "received_at": to_iso(record.received_at),
        "event": record.event,
    }
    delivery = delivery_line(record)
    if delivery is not None:
        line["delivery"] = delivery
    if record.sender:
        line["sender"] = dict(record.sender)
    return line


def order_line(pixel_id: str, order: Order) -> dict[str, Any]:
    line: dict[str, Any] = {
        "order_id": order.order_id,
        "pixel_id": pixel_id,
        "created_at": to_iso(order.created_at),
        "value": order.value,
        "currency": order.currency,
    }
    if order.user_data:
        line["user_data"] = {name: list(values) for name, values in order.user_data.items()}
    return line
