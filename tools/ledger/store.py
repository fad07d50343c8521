"""Recording events and delivery attempts: the one write path of the ingest, the relay and the fixes.

Every event's ``user_data`` goes through ``prepare_user_data`` before anything is written, so the
ledger only ever holds hashed customer information plus flags saying what arrived raw or malformed.
Rollups are updated in the same transaction as the rows they summarise.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

try:  # a dependency of langgraph; optional here
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]
from sqlalchemy import null, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.bulk import (
    chunked,
    event_names_by_id,
    ids_by_content_hash,
    insert_deliveries,
    insert_delivery_links,
    insert_events,
    known_content_hashes,
    known_purchases,
)
from tools.ledger.models import Event, Order
from tools.ledger.payload import payload_flags
from tools.ledger.rollups import (
    FIELD_FLAGS,
    PURCHASE,
    TOP_PREFIX,
    PurchaseIndex,
    RollupDeltas,
    apply_deltas,
    count_events,
)
from tools.meta.normalize import sha256_hex
from tools.meta.userdata import PreparedUserData, prepare_user_data
from tools.timeutil import as_utc, from_unix, to_iso, utcnow

AttemptStatus = Literal["delivered", "failed", "pending"]
# Replay is only possible under 7 days (Meta's limit); one more day of margin (docs/meta-api.md).
PAYLOAD_RETENTION = timedelta(days=8)


@dataclass(frozen=True)
class DeliveryOutcome:
    """Meta's answer to one attempt (``attempted_at`` None: queued, never attempted yet)."""

    status: AttemptStatus
    attempted_at: datetime | None
    http_status: int | None = None
    error_code: int | None = None
    error_subcode: int | None = None
    fbtrace_id: str | None = None
    events_received: int | None = None
    attempts: int = 1  # attempts this outcome stands for (an import may report retries as a count)
    # Earlier failed attempts of the same event, oldest first (an import's ``delivery.retries``).
    earlier: tuple[DeliveryOutcome, ...] = ()


@dataclass(frozen=True)
class IncomingEvent:
    pixel_id: str
    received_at: datetime
    event: Mapping[str, Any]  # Meta's server event object, as received (may hold raw PII)
    delivery: DeliveryOutcome | None = None


@dataclass
class StoredBatch:
    """What one call stored. ``event_row_ids`` follows the input order; None: already in the ledger."""

    event_row_ids: list[int | None] = field(default_factory=list)
    loaded: int = 0
    duplicates: int = 0
    raw_pii_hashed: Counter[str] = field(default_factory=Counter)


def _content_hash(pixel_id: str, received_at: datetime, event: Mapping[str, Any]) -> str:
    """Stable across key order; the event is already hashed, so no raw PII goes into it."""
    try:
        if _orjson is None:  # pragma: no cover
            raise TypeError("orjson not installed")
        canonical = _orjson.dumps(event, option=_orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # no orjson, or a value it refuses (an integer beyond 64 bits)
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(f"{pixel_id}|{to_iso(received_at)}|".encode() + canonical).hexdigest()


def _text_or_none(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)


def _utc(value: datetime) -> datetime:
    # as_utc, without the conversion call for values already in UTC (nearly all of them).
    return value if value.tzinfo is UTC else as_utc(value)


# (flag name in ``flags``, PreparedUserData attribute), in FIELD_FLAGS order: stored JSON keeps it.
_FLAG_SOURCES = tuple((name, "keys_present" if name == "keys" else name) for name in FIELD_FLAGS)


# The user key of a purchase_key: the first of these the event carries as a usable key.
PURCHASE_USER_KEYS = ("em", "ph", "external_id", "fbp")


def purchase_key(prepared: PreparedUserData, custom: Any) -> str | None:
    """sha256 prefix of (hashed user key, value, currency) of a Purchase; None without a user key or
    a numeric value. Only hashed or pseudonymous values go into it, and only its hash is stored."""
    if not isinstance(custom, dict):
        return None
    value = custom.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = float(value)
    except ValueError:
        return None
    if amount != amount:  # NaN
        return None
    for name in PURCHASE_USER_KEYS:
        if name not in prepared.keys_present:
            continue
        user = prepared.user_data.get(name)
        first = user[0] if isinstance(user, list) and user else user
        if isinstance(first, str) and first:
            currency = str(custom.get("currency") or "").strip().upper()
            return sha256_hex(f"{name}:{first}|{amount:.2f}|{currency}")[:32]
    return None


def _event_row(item: IncomingEvent, *, default_country: str, repair: bool) -> tuple[dict[str, Any], Any]:
    """The ``events`` row for one incoming event, with user_data hashed (raw PII never leaves here)."""
    event = dict(item.event)
    prepared = prepare_user_data(event.get("user_data") or {}, default_country=default_country,
                                 repair=repair)
    event["user_data"] = prepared.user_data
    flags: dict[str, Any] = {}
    for name, attribute in _FLAG_SOURCES:
        names = getattr(prepared, attribute)
        if names:
            flags[name] = sorted(names)
    if prepared.top_values:
        flags["top"] = {name: value[:TOP_PREFIX] for name, value in sorted(prepared.top_values.items())}
    event_time = from_unix(int(event["event_time"]))
    # From the event as it arrived (user_data not yet hashed): what the payload rollups count.
    payload_notes = payload_flags(item.event, event_time=event_time, received_at=item.received_at)
    if payload_notes:
        flags["payload"] = payload_notes
    custom = event.get("custom_data")
    order_ref = _text_or_none(custom.get("order_id")) if isinstance(custom, dict) else None
    outcome = item.delivery
    attempted_at = outcome.attempted_at if outcome is not None else None
    first_attempt_at = outcome.earlier[0].attempted_at if outcome is not None and outcome.earlier else attempted_at
    row = {
        "pixel_id": item.pixel_id, "event_name": str(event["event_name"]),
        "event_time": event_time, "received_at": _utc(item.received_at),
        "event_id": _text_or_none(event.get("event_id")), "order_ref": order_ref,
        "action_source": _text_or_none(event.get("action_source")), "payload": event, "flags": flags,
        "delivery_status": outcome.status if outcome else "never_sent",
        "attempts": outcome.attempts if attempted_at is not None and outcome else 0,
        "first_attempt_at": first_attempt_at, "last_attempt_at": attempted_at,
        "last_error_code": outcome.error_code if outcome else None,
        "last_error_subcode": outcome.error_subcode if outcome else None,
        "content_hash": _content_hash(item.pixel_id, item.received_at, event),
        "purchase_key": purchase_key(prepared, custom) if event["event_name"] == PURCHASE else None,
    }
    return row, prepared


def _purchase_index(session: Session, pixel_id: str, rows: list[tuple[int, dict[str, Any]]]) -> PurchaseIndex:
    """The stored Purchases a batch's Purchases could repeat (same order ref or purchase key)."""
    index = PurchaseIndex()
    purchases = [r for _, r in rows if r["event_name"] == PURCHASE]
    refs = sorted({r["order_ref"] for r in purchases if r["order_ref"] is not None})
    keys = sorted({r["purchase_key"] for r in purchases if r["purchase_key"] is not None})
    if refs or keys:
        for order_ref, key, event_id, event_time in known_purchases(session, pixel_id, refs, keys):
            index.add(pixel_id, event_id, order_ref, key, event_time)
    return index


def _match_orders(session: Session, pixel_id: str, refs: set[str], deltas: RollupDeltas) -> None:
    """Orders waiting for a server Purchase with one of these ids become matched."""
    for chunk in chunked(sorted(refs)):
        waiting = session.execute(select(col(Order.id), col(Order.created_at)).where(
            col(Order.pixel_id) == pixel_id, col(Order.order_id).in_(chunk), col(Order.matched).is_(False))).all()
        if not waiting:
            continue
        session.execute(update(Order).where(col(Order.id).in_([row.id for row in waiting]))
                        .values(matched=True))
        for row in waiting:
            deltas.add_order_match(pixel_id=pixel_id, created_at=row.created_at)


# One incoming event made ready for the ledger: its ``events`` row (user_data hashed) and the fields
# that arrived raw. Not changed by ``store_events``, so it may be prepared once and stored again.
PreparedEvent = tuple[dict[str, Any], frozenset[str]]


def prepare_events(items: Sequence[IncomingEvent], *, default_country: str = "US",
                   repair: bool = False) -> list[PreparedEvent]:
    """The rows ``store_events`` would write for these items (no database): raw PII is hashed here.
    The relay calls it on the request's thread, so its one writer thread only writes."""
    prepared: list[PreparedEvent] = []
    for item in items:
        row, user_data = _event_row(item, default_country=default_country, repair=repair)
        prepared.append((row, user_data.raw))
    return prepared


def store_events(session: Session, items: Sequence[IncomingEvent], *, default_country: str = "US",
                 repair: bool = False, deltas: RollupDeltas | None = None,
                 prepared: Sequence[PreparedEvent] | None = None) -> StoredBatch:
    """Record events (and, for imports, the delivery outcome each line carries) with their rollups.

    Promises: an item whose (pixel, received_at, hashed event) is already stored adds nothing; an
    event id already present for the same pixel and event name counts as a duplicate event id.
    With ``deltas`` the rollup increments are added to it for the caller to apply (once for all the
    writes of its transaction) instead of being written here; ``prepared``: the items' rows from
    ``prepare_events`` with the same country and mode, made earlier. Does not commit.
    """
    result = StoredBatch(event_row_ids=[None] * len(items))
    if prepared is None:
        prepared = prepare_events(items, default_country=default_country, repair=repair)
    elif len(prepared) != len(items):
        raise ValueError("prepared rows do not match the items")
    rows: list[tuple[int, dict[str, Any]]] = [(index, row) for index, (row, _raw) in enumerate(prepared)]
    raw_fields: list[frozenset[str]] = [raw for _row, raw in prepared]
    by_pixel: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, row in rows:
        by_pixel.setdefault(row["pixel_id"], []).append((index, row))
    own_deltas = deltas is None
    deltas = RollupDeltas() if deltas is None else deltas
    new_rows: list[tuple[int, dict[str, Any]]] = []
    for pixel_id, pixel_rows in by_pixel.items():
        existing = known_content_hashes(session, pixel_id, [r["content_hash"] for _, r in pixel_rows])
        fresh: list[tuple[int, dict[str, Any]]] = []
        for index, row in pixel_rows:
            if row["content_hash"] in existing:
                result.duplicates += 1
                continue
            existing.add(row["content_hash"])
            fresh.append((index, row))
            result.raw_pii_hashed.update(raw_fields[index])
        event_ids = sorted({r["event_id"] for _, r in fresh if r["event_id"] is not None})
        count_events((r for _, r in fresh), deltas, event_names_by_id(session, pixel_id, event_ids),
                     _purchase_index(session, pixel_id, fresh))
        refs = {ref for _, r in fresh if r["event_name"] == "Purchase"
                for ref in (r["event_id"], r["order_ref"]) if ref is not None}
        if refs:
            _match_orders(session, pixel_id, refs, deltas)
        new_rows.extend(fresh)
    if new_rows:
        # Plain executemany (RETURNING in parameter order would make SQLite insert row by row);
        # ids come from the insert when certain, else by content hash.
        inserted = [r for _, r in new_rows]
        known_ids = insert_events(session, inserted)
        if known_ids is None:
            ids = ids_by_content_hash(session, inserted)
            known_ids = [ids[(row["pixel_id"], row["content_hash"])] for row in inserted]
        for (index, _), row_id in zip(new_rows, known_ids, strict=True):
            result.event_row_ids[index] = row_id
        result.loaded = len(new_rows)
        _store_import_deliveries(session, [(items[i], result.event_row_ids[i]) for i, _ in new_rows],
                                 deltas)
    if own_deltas:
        apply_deltas(session, deltas)
    return result


def _store_import_deliveries(session: Session, stored: list[tuple[IncomingEvent, int | None]],
                             deltas: RollupDeltas) -> None:
    """Imported lines sharing one attempt (same pixel, time, answer, fbtrace_id) form one delivery."""
    groups: dict[tuple[Any, ...], list[tuple[DeliveryOutcome, int]]] = {}
    for item, event_row_id in stored:
        final = item.delivery
        if final is None or event_row_id is None:
            continue
        # Earlier failed attempts first (retry numbers 0, 1, ...), then the final outcome.
        for outcome in (*final.earlier, final):
            if outcome.attempted_at is None:
                continue
            key = (item.pixel_id, _utc(outcome.attempted_at), outcome.status, outcome.http_status,
                   outcome.error_code, outcome.error_subcode, outcome.fbtrace_id, outcome.attempts)
            members = groups.get(key)
            if members is None:
                groups[key] = [(outcome, event_row_id)]
            else:
                members.append((outcome, event_row_id))
    if not groups:
        return
    delivery_rows = []
    for (pixel_id, attempted_at, status, http, code, subcode, trace, attempts), members in groups.items():
        # Per line: events_received > 0 (or, when absent, status delivered) means this event got in.
        received = sum(1 for outcome, _ in members if (
            outcome.events_received > 0 if outcome.events_received is not None else status == "delivered"))
        delivery_rows.append({"pixel_id": pixel_id, "attempted_at": attempted_at, "status": status,
                              "http_status": http, "events_sent": len(members), "events_received": received,
                              "error_code": code, "error_subcode": subcode, "fbtrace_id": trace,
                              "retry_number": attempts - 1, "fix_id": None})
        deltas.add_delivery(pixel_id=pixel_id, attempted_at=attempted_at, status=status,
                            events_sent=len(members), events_received=received, error_code=code,
                            error_subcode=subcode, retry_number=attempts - 1)
    ids = insert_deliveries(session, delivery_rows)
    insert_delivery_links(session, [(delivery_id, event_row_id)
                                    for delivery_id, members in zip(ids, groups.values(), strict=True)
                                    for _, event_row_id in members])


def record_events(session: Session, *, pixel_id: str, events: Sequence[Mapping[str, Any]],
                  received_at: datetime, default_country: str = "US", repair: bool = False) -> StoredBatch:
    """Record a batch of server events as received (e.g. by the relay) before they are sent.

    Each event needs a string ``event_name`` and an integer ``event_time`` (validate first);
    raises ValueError naming the first event that lacks them, before anything is written.
    """
    for index, event in enumerate(events):
        name, event_time = event.get("event_name"), event.get("event_time")
        if not isinstance(name, str) or not name or isinstance(event_time, bool) or not isinstance(
                event_time, int | float):
            raise ValueError(f"event {index} needs a string event_name and an integer event_time")
    items = [IncomingEvent(pixel_id=pixel_id, received_at=received_at, event=event) for event in events]
    return store_events(session, items, default_country=default_country, repair=repair)


def purge_payloads(session: Session, *, older_than: datetime | None = None,
                   now: datetime | None = None) -> int:
    """Drop stored payloads of events received before ``older_than`` (default: ``now`` minus
    ``PAYLOAD_RETENTION``); rows, flags and rollups stay. Returns how many were purged. No commit."""
    cutoff = as_utc(older_than) if older_than is not None else as_utc(now or utcnow()) - PAYLOAD_RETENTION
    result = session.execute(update(Event).where(col(Event.received_at) < cutoff, col(Event.payload).is_not(None))
                             .values(payload=null()), execution_options={"synchronize_session": False})
    return int(getattr(result, "rowcount", 0) or 0)
