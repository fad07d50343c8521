"""Tables of sender fingerprints (migration ``0010_sender_changes``). Names and versions only: no
customer data, no tokens (``tools.senders.fingerprint.clean_text`` runs on everything stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from tools.ledger.models import JsonType, RowId, UtcDateTime


class SenderIdentity(SQLModel, table=True):
    """One sender of a pixel (a plugin, an SDK, an agent), whatever its version; ``state`` holds the
    hour being counted and the usual fields and match keys per event name."""

    __tablename__ = "sender_identities"

    pixel_id: str = Field(primary_key=True, max_length=64)
    identity: str = Field(primary_key=True, max_length=200)
    label: str = Field(max_length=400)
    fingerprint: str = Field(max_length=32)
    first_seen: datetime = Field(sa_type=UtcDateTime)
    last_seen: datetime = Field(sa_type=UtcDateTime)
    events: int = 0
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


class SenderFingerprint(SQLModel, table=True):
    """One version of a sender's software (identity, versions, user agent) as seen on a pixel."""

    __tablename__ = "sender_fingerprints"

    pixel_id: str = Field(primary_key=True, max_length=64)
    fingerprint: str = Field(primary_key=True, max_length=32)
    identity: str = Field(max_length=200)
    label: str = Field(max_length=400)
    info: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    first_seen: datetime = Field(sa_type=UtcDateTime)
    last_seen: datetime = Field(sa_type=UtcDateTime)
    events: int = 0
    requests: int = 0


class SenderChangeRow(SQLModel, table=True):
    """A change on the pixel's timeline; recording the same change twice adds nothing."""

    __tablename__ = "sender_changes"
    __table_args__ = (
        UniqueConstraint("pixel_id", "at", "kind", "sender", "event_name", name="uq_sender_changes"),
        Index("ix_sender_changes_pixel_at", "pixel_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    pixel_id: str = Field(max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
    kind: str = Field(max_length=32)
    sender: str = Field(max_length=200)
    event_name: str = Field(default="", max_length=200)
    before: str = Field(default="", sa_type=String(1000))
    after: str = Field(default="", sa_type=String(1000))
    recorded_at: datetime = Field(sa_type=UtcDateTime)
