"""backfill_from_orders: rebuild Purchases that never reached Meta from the shop's orders.

An order of the window becomes a Purchase (its id as ``event_id`` and ``custom_data.order_id``, its
time, value, currency and hashed customer information) only when the ledger holds no Purchase for it:
none with the order id as event_id or custom_data.order_id (``orders.matched``), and none at the same
time (``MATCH_TOLERANCE``) with the same value and currency and, where both carry one, the same hashed
customer. Orders older than Meta's 7 days, younger than ``SETTLE``, without customer information (Meta
would refuse the whole request), without a currency, or in another backfill's journal are left out
and counted.

Never twice: once sent, the Purchases are stored in the ledger (which marks their orders matched, so
no later selection takes them), in the same commit as the chunk's ``sent``; a chunk interrupted
between its request and that commit is ``uncertain`` (``execute.py``) and its orders stay out of
every other backfill; and ``event_id`` = order id lets Meta deduplicate anything that still repeats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.fixes.kinds.base import FixKindSpec, PreparedChunk
from tools.fixes.models import FixChunk, FixProposalRow
from tools.fixes.replay import Candidate, Selection, resolve_window, too_old_cutoff
from tools.fixes.types import FixParams
from tools.ledger.bulk import chunked
from tools.ledger.models import Event, Order
from tools.ledger.store import IncomingEvent, purchase_key, store_events
from tools.meta.userdata import prepare_user_data
from tools.timeutil import as_utc, to_unix

NAME = "backfill_from_orders"
PURCHASE = "Purchase"
# How far apart an order and a Purchase without its order id may be and still be the same sale.
MATCH_TOLERANCE = timedelta(minutes=10)
# An order younger than this may still get its Purchase from the shop (under another event_id, which
# Meta could not deduplicate against ours): it waits for a later backfill.
SETTLE = timedelta(hours=1)
# The order is not seen on the website here: no page URL or browser is known for it, and Meta's
# "website" source requires both.
ACTION_SOURCE = "system_generated"


class BackfillParams(FixParams):
    """The window of order times ([since, until), default the last 7 days). Only Purchases."""

    @field_validator("event_names")
    @classmethod
    def _purchase_only(cls, names: list[str]) -> list[str]:
        if set(names) - {PURCHASE}:
            raise ValueError("backfill_from_orders rebuilds Purchase events only")
        return [PURCHASE] if names else []


@dataclass(frozen=True)
class _Order:
    id: int
    order_id: str
    created_at: datetime
    value: float
    currency: str | None
    matched: bool
    user_data: dict[str, Any] | None


def purchase_event(order: _Order) -> dict[str, Any]:
    """The Purchase Meta should have received for this order (user_data as stored: hashed)."""
    return {
        "event_name": PURCHASE,
        "event_time": to_unix(order.created_at),
        "event_id": order.order_id,
        "action_source": ACTION_SOURCE,
        "user_data": dict(order.user_data or {}),
        "custom_data": {"value": order.value, "currency": order.currency, "order_id": order.order_id},
    }


def _orders(session: Session, query: Any) -> list[_Order]:
    return [_Order(row.id, row.order_id, as_utc(row.created_at), float(row.value), row.currency,
                   bool(row.matched), row.user_data) for row in session.scalars(query)]


def _order_key(order: _Order) -> str | None:
    if not order.user_data:
        return None
    return purchase_key(prepare_user_data(order.user_data),
                        {"value": order.value, "currency": order.currency})


def _with_purchase(session: Session, pixel_id: str, orders: Sequence[_Order]) -> dict[int, str]:
    """Order row id -> why the ledger already holds its Purchase (by order id, or by time, value and
    hashed customer)."""
    found: dict[int, str] = {o.id: "purchase_in_ledger" for o in orders if o.matched}
    waiting = [o for o in orders if not o.matched]
    by_ref: set[str] = set()
    for part in chunked(sorted({o.order_id for o in waiting})):
        for event_id, order_ref in session.execute(select(col(Event.event_id), col(Event.order_ref)).where(
                col(Event.pixel_id) == pixel_id, col(Event.event_name) == PURCHASE,
                col(Event.event_id).in_(part) | col(Event.order_ref).in_(part))):
            by_ref.update(ref for ref in (event_id, order_ref) if ref is not None)
    found.update({o.id: "purchase_in_ledger" for o in waiting if o.order_id in by_ref})
    waiting = [o for o in waiting if o.id not in found]
    if not waiting:
        return found
    # Purchases without an order id near these orders' times: the same sale sent without its id.
    start = min(o.created_at for o in waiting) - MATCH_TOLERANCE
    end = max(o.created_at for o in waiting) + MATCH_TOLERANCE
    purchases = session.execute(
        select(col(Event.id), col(Event.event_time), col(Event.purchase_key), col(Event.payload)).where(
            col(Event.pixel_id) == pixel_id, col(Event.event_name) == PURCHASE, col(Event.order_ref).is_(None),
            col(Event.event_time) >= start, col(Event.event_time) <= end)
        .order_by(col(Event.event_time), col(Event.id))).all()
    used: set[int] = set()
    for order in waiting:
        key = _order_key(order)
        for row in purchases:
            if row.id in used or abs(as_utc(row.event_time) - order.created_at) > MATCH_TOLERANCE:
                continue
            if key is not None and row.purchase_key is not None:
                same = key == row.purchase_key
            else:
                custom = (row.payload or {}).get("custom_data") or {}
                same = _same_amount(custom, order)
            if same:
                used.add(row.id)
                found[order.id] = "purchase_matched_by_time_value"
                break
    return found


def _same_amount(custom: Mapping[str, Any], order: _Order) -> bool:
    try:
        value = float(custom.get("value"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    currency = str(custom.get("currency") or "").upper()
    return abs(value - order.value) < 0.005 and currency == (order.currency or "").upper()


def _in_other_backfills(session: Session, pixel_id: str, proposal_id: str | None) -> set[int]:
    """Order row ids another backfill has planned, is sending, sent or may have sent (uncertain)."""
    query = (select(col(FixChunk.status), col(FixChunk.event_ids), col(FixChunk.sent_ids))
             .join(FixProposalRow, col(FixProposalRow.id) == col(FixChunk.proposal_id))
             .where(col(FixProposalRow.kind) == NAME, col(FixProposalRow.pixel_id) == pixel_id,
                    col(FixChunk.status).in_(("planned", "sending", "sent", "uncertain"))))
    if proposal_id is not None:
        query = query.where(col(FixChunk.proposal_id) != proposal_id)
    held: set[int] = set()
    for status, planned, sent in session.execute(query):
        held.update(planned if status == "planned" else sent)
    return held


def _skip_reasons(session: Session, pixel_id: str, orders: Sequence[_Order], *, at: datetime,
                  proposal_id: str | None) -> dict[int, str]:
    """Order row id -> why it must not become a Purchase now (absent: send it)."""
    reasons = _with_purchase(session, pixel_id, orders)
    held = _in_other_backfills(session, pixel_id, proposal_id)
    cutoff = too_old_cutoff(at)
    for order in orders:
        if order.id in reasons:
            continue
        if order.created_at < cutoff:
            reasons[order.id] = "too_old"
        elif order.created_at > as_utc(at) - SETTLE:
            reasons[order.id] = "too_recent"
        elif order.id in held:
            reasons[order.id] = "in_another_fix"
        elif not order.user_data or not prepare_user_data(order.user_data).keys_present:
            reasons[order.id] = "no_customer_information"
        elif not order.currency:
            reasons[order.id] = "no_currency"
    return reasons


class BackfillFromOrders(FixKindSpec):
    name = NAME
    summary = (f"{NAME} (rebuild lost Purchases from the shop's orders that have none; "
               "event_names must be empty or [\"Purchase\"])")
    params_model = BackfillParams
    # The journal's ids are order rows: a refused request has no ledger events to record it against.
    records_failed_requests = False

    def select(self, session: Session, *, pixel_id: str, params: FixParams, at: datetime) -> Selection:
        since, until = resolve_window(params, at)
        selection = Selection(since=since, until=until)
        orders = _orders(session, select(Order).where(
            col(Order.pixel_id) == pixel_id, col(Order.created_at) >= since, col(Order.created_at) < until)
            .order_by(col(Order.created_at), col(Order.id)))
        reasons = _skip_reasons(session, pixel_id, orders, at=at, proposal_id=None)
        for order in orders:
            if order.id in reasons:
                selection.skipped[reasons[order.id]] += 1
            else:
                selection.eligible.append(Candidate(order.id, PURCHASE, order.created_at, ref=order.order_id,
                                                    value=order.value, currency=order.currency))
        return selection

    def prepare_chunk(self, session: Session, *, pixel_id: str, params: FixParams, ids: Sequence[int],
                      send_at: datetime, country: str, proposal_id: str) -> PreparedChunk:
        orders: list[_Order] = []
        for part in chunked(list(ids)):
            orders.extend(_orders(session, select(Order).where(col(Order.pixel_id) == pixel_id,
                                                               col(Order.id).in_(part))))
        order_of = {order.id: order for order in orders}
        prepared = PreparedChunk(skipped=Counter({"missing": len(ids) - len(orders)}))
        reasons = _skip_reasons(session, pixel_id, orders, at=send_at, proposal_id=proposal_id)
        for order_row in ids:
            order = order_of.get(order_row)
            if order is None:
                continue
            if order.id in reasons:
                prepared.skipped[reasons[order.id]] += 1
                continue
            prepared.ids.append(order.id)
            prepared.events.append(purchase_event(order))
        prepared.skipped = +prepared.skipped
        return prepared

    def ledger_rows(self, session: Session, *, pixel_id: str, ids: Sequence[int],
                    events: Sequence[Mapping[str, Any]], at: datetime) -> list[int]:
        """The sent Purchases, stored as server events (their orders become matched).

        Received "at" the order's time, not now: arrival rollups would otherwise show days-late
        arrivals this hour, a backlog the latency check would blame on the shop's sender."""
        stored = store_events(session, [
            IncomingEvent(pixel_id=pixel_id, received_at=datetime.fromtimestamp(int(event["event_time"]), UTC),
                          event=event) for event in events])
        return [row_id for row_id in stored.event_row_ids if row_id is not None]


KIND = BackfillFromOrders()
