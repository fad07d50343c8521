"""The ledger's tables (sqlmodel). The schema itself is created by the Alembic migrations in
``tools/ledger/migrations`` (never by ``create_all``); a test keeps the two in step.

Times are stored timezone-aware UTC (SQLite hands them back naive: read through ``as_utc``).
Payloads hold ``user_data`` already normalized and hashed: raw PII never reaches these tables.

Events and delivery attempts are linked through ``delivery_events`` (an event may ride in several
attempts: a failure, then a retry or a replay).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, Table, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# JSON on SQLite, JSONB on Postgres. SQLite's INTEGER PRIMARY KEY is the rowid alias (BIGINT is not).
JsonType = JSON().with_variant(JSONB(), "postgresql")
RowId = BigInteger().with_variant(Integer(), "sqlite")
UtcDateTime = DateTime(timezone=True)

# sending/uncertain: the relay's store-and-forward journal (in flight; unknown after a crash).
DELIVERY_STATUSES = ("never_sent", "pending", "delivered", "failed", "sending", "uncertain")


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a ``table=True`` model, for statements on columns rather than objects
    (bulk inserts, upserts, ``select(*table.c)``)."""
    # SQLAlchemy's declarative mapping sets __table__ when the class is created; SQLModel's stubs do not
    # declare it, hence the one ignore here instead of one at every use.
    table = model.__table__  # type: ignore[attr-defined]
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


class PixelBase(SQLModel):
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=200)
    # Token env name / ref (never the token), thresholds, timezone, slack channel, relay mode, country.
    settings: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class Pixel(PixelBase, table=True):
    __tablename__ = "pixels"
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class Event(SQLModel, table=True):
    """One server event as the ledger received it."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("pixel_id", "content_hash", name="uq_events_pixel_content"),
        Index("ix_events_pixel_name_event_id", "pixel_id", "event_name", "event_id"),
        # Ingest's duplicate look-up asks by (pixel_id, event_id IN ...), whatever the event name.
        Index("ix_events_pixel_event_id", "pixel_id", "event_id"),
        Index("ix_events_pixel_order_ref", "pixel_id", "order_ref"),
        Index("ix_events_pixel_purchase_key", "pixel_id", "purchase_key"),
        Index("ix_events_pixel_event_time", "pixel_id", "event_time"),
        Index("ix_events_pixel_status_time", "pixel_id", "delivery_status", "event_time"),
        Index("ix_events_received_at", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    event_name: str = Field(max_length=200)
    event_time: datetime = Field(sa_type=UtcDateTime)
    received_at: datetime = Field(sa_type=UtcDateTime)
    event_id: str | None = Field(default=None, max_length=400)
    # custom_data.order_id, for matching the shop's orders.
    order_ref: str | None = Field(default=None, max_length=400)
    # Purchases only: sha256 prefix of (hashed user key, value, currency), to recognise the same order
    # sent twice under two event_ids when no order id tells them apart (see rollups.PurchaseIndex).
    purchase_key: str | None = Field(default=None, max_length=32)
    action_source: str | None = Field(default=None, max_length=50)
    # Meta's event object with user_data hashed; None once purged after the retention period.
    payload: dict[str, Any] | None = Field(default=None, sa_type=JsonType)
    # Field names per flag: {"raw": [...], "placeholder": [...], "malformed": [...], ...}.
    flags: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    delivery_status: str = Field(default="never_sent", max_length=16)
    attempts: int = 0
    first_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error_code: int | None = None
    last_error_subcode: int | None = None
    # sha256 of (received_at, hashed event): the same line ingested twice is stored once.
    content_hash: str = Field(max_length=64)


class Delivery(SQLModel, table=True):
    """One attempt to send a batch of events to Meta, and Meta's answer."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_pixel_attempted", "pixel_id", "attempted_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    attempted_at: datetime = Field(sa_type=UtcDateTime)
    status: str = Field(max_length=16)  # delivered | failed | pending (transient failure, will retry)
    http_status: int | None = None
    events_sent: int = 0
    events_received: int = 0
    error_code: int | None = None
    error_subcode: int | None = None
    fbtrace_id: str | None = Field(default=None, max_length=100)
    retry_number: int = 0  # 0: first attempt for these events
    fix_id: str | None = Field(default=None, max_length=100, index=True)


class DeliveryEvent(SQLModel, table=True):
    __tablename__ = "delivery_events"

    delivery_id: int = Field(foreign_key="deliveries.id", primary_key=True, ondelete="CASCADE",
                             sa_type=RowId)
    event_row_id: int = Field(foreign_key="events.id", primary_key=True, ondelete="CASCADE",
                              sa_type=RowId, index=True)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("pixel_id", "order_id", name="uq_orders_pixel_order"),
        Index("ix_orders_pixel_created", "pixel_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    order_id: str = Field(max_length=400)
    created_at: datetime = Field(sa_type=UtcDateTime)
    value: float = 0.0
    currency: str | None = Field(default=None, max_length=8)
    # A server Purchase with this order id (event_id or custom_data.order_id) is in the ledger.
    matched: bool = False
    # The customer's information as prepare_user_data returns it (hashed; ip/user agent/fbc/fbp as
    # Meta wants them), for rebuilding a lost Purchase (fix backfill_from_orders). Never raw PII.
    user_data: dict[str, Any] | None = Field(default=None, sa_type=JsonType)


class MetaSnapshot(SQLModel, table=True):
    __tablename__ = "meta_snapshots"
    __table_args__ = (Index("ix_meta_snapshots_pixel_kind_fetched", "pixel_id", "kind", "fetched_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)  # stats | dataset_quality
    window_start: datetime | None = Field(default=None, sa_type=UtcDateTime)
    window_end: datetime | None = Field(default=None, sa_type=UtcDateTime)
    fetched_at: datetime = Field(sa_type=UtcDateTime)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class EventHourRollup(SQLModel, table=True):
    """Server events of one name in one hour of event_time. Counters are columns (incremented
    atomically); the per-field maps, lag histogram and top-value summary live in ``detail``."""

    __tablename__ = "event_hours"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    event_name: str = Field(primary_key=True, max_length=200)
    events: int = 0
    with_event_id: int = 0
    duplicate_event_ids: int = 0
    double_order_ids: int = 0
    double_purchase_keys: int = 0
    too_old: int = 0
    future_time: int = 0
    undelivered: int = 0
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class DeliveryHourRollup(SQLModel, table=True):
    __tablename__ = "delivery_hours"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    attempts: int = 0
    events_sent: int = 0
    events_received: int = 0
    failed_attempts: int = 0
    retried_attempts: int = 0
    transport_errors: int = 0
    errors: dict[str, int] = Field(default_factory=dict, sa_type=JsonType)  # "code/subcode" -> attempts


class OrderHourRollup(SQLModel, table=True):
    __tablename__ = "order_hours"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    orders: int = 0
    matched: int = 0
    value: float = 0.0


class ArrivalHourRollup(SQLModel, table=True):
    """Events by the hour they *arrived* (received_at), with the signed offset received_at - event_time
    as a histogram (``tools.checks.types.OFFSET_EDGES``). Beside the event-time rollups it tells a
    clock that is wrong (every arrival off by the same amount, from its first hour) from a backlog
    (arrivals late by a spread of amounts) and from an outage (no arrivals)."""

    __tablename__ = "arrival_hours"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    events: int = 0
    offsets: list[int] = Field(default_factory=list, sa_type=JsonType)


class PayloadHourRollup(SQLModel, table=True):
    """Events of one name in one hour of event_time, by the payload defects Meta accepts but cannot use
    well (``detail``: {"issues": {code: events}, "examples": {code: [masked]}, "ip": {prefix: n},
    "ip_n": n, "users": {prefix: n}, "users_n": n, "id_shapes": {shape: n}}). Counts, masked examples
    and hash prefixes only: never a raw value."""

    __tablename__ = "payload_hours"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    event_name: str = Field(primary_key=True, max_length=200)
    events: int = 0
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class Audit(SQLModel, table=True):
    __tablename__ = "audits"
    __table_args__ = (Index("ix_audits_pixel_window", "pixel_id", "window_end"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    window_start: datetime = Field(sa_type=UtcDateTime)
    window_end: datetime = Field(sa_type=UtcDateTime)
    at: datetime = Field(sa_type=UtcDateTime)
    status: str = Field(max_length=16)  # ok | findings | error
    findings: int = 0
    critical: int = 0
    warning: int = 0
    tokens_used: int = 0
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class FindingRow(SQLModel, table=True):
    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_pixel_fingerprint", "pixel_id", "fingerprint"),
                      Index("ix_findings_pixel_window", "pixel_id", "window_end"))

    id: str = Field(primary_key=True, max_length=64)
    audit_id: int | None = Field(default=None, foreign_key="audits.id", ondelete="SET NULL",
                                 sa_type=RowId, index=True)
    pixel_id: str = Field(max_length=64)
    check: str = Field(max_length=32)
    code: str = Field(max_length=100)
    event_name: str | None = Field(default=None, max_length=200)
    severity: str = Field(max_length=16)
    fingerprint: str = Field(max_length=64)
    window_start: datetime = Field(sa_type=UtcDateTime)
    window_end: datetime = Field(sa_type=UtcDateTime)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class IncidentRow(SQLModel, table=True):
    __tablename__ = "incidents"
    __table_args__ = (
        # At most one open incident per fingerprint and pixel.
        Index("uq_incidents_open_fingerprint", "pixel_id", "fingerprint", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("ix_incidents_pixel_status", "pixel_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=64)
    pixel_id: str = Field(max_length=64)
    fingerprint: str = Field(max_length=64)
    root_cause: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(default="open", max_length=16)  # open | resolved
    opened_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime = Field(sa_type=UtcDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    body: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class RelayKey(SQLModel, table=True):
    """A key the relay accepts for one pixel in place of its Meta token; only its SHA-256 is kept."""

    __tablename__ = "relay_keys"

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64, index=True)
    key_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class RelayRefusal(SQLModel, table=True):
    """Requests the relay refused (bad token, unconfigured pixel, rate limit) per pixel, hour of arrival,
    sender address (a server's IP, never a customer's) and reason. Their events are never stored."""

    __tablename__ = "relay_refusals"

    pixel_id: str = Field(primary_key=True, max_length=64)
    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    source: str = Field(primary_key=True, max_length=64)
    reason: str = Field(primary_key=True, max_length=32)
    requests: int = 0
    events: int = 0
    last_at: datetime = Field(sa_type=UtcDateTime)


ALL_TABLES = ("pixels", "events", "deliveries", "delivery_events", "orders", "meta_snapshots",
              "event_hours", "delivery_hours", "order_hours", "arrival_hours", "payload_hours", "audits",
              "findings", "incidents", "relay_keys", "relay_refusals")
