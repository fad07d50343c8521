"""Relay keys: secrets the relay accepts for one pixel in place of its Meta token, so a sender need not
hold the Meta token at all. A key is shown once when issued; only its SHA-256 is stored, and a presented
key is compared with the stored hashes in constant time (``hmac.compare_digest``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.db import rowcount
from tools.ledger.models import RelayKey
from tools.timeutil import as_utc

KEY_PREFIX = "capirk_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", errors="replace")).hexdigest()


def issue_key(session: Session, *, pixel_id: str, now: datetime, label: str = "") -> tuple[str, RelayKey]:
    """A new random key for the pixel (256 bits); returns it (shown once) and its stored row. No commit."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = RelayKey(pixel_id=pixel_id, key_hash=key_hash(key), label=label[:200], created_at=as_utc(now))
    session.add(row)
    session.flush()
    return key, row


def revoke_key(session: Session, *, key_id: int, now: datetime) -> bool:
    """Revoke one key by id; False when there is no such live key. No commit."""
    done = session.execute(update(RelayKey).where(col(RelayKey.id) == key_id, col(RelayKey.revoked_at).is_(None))
                           .values(revoked_at=as_utc(now)), execution_options={"synchronize_session": False})
    return bool(rowcount(done))


def list_keys(session: Session, pixel_id: str | None = None) -> list[RelayKey]:
    query = select(RelayKey).order_by(col(RelayKey.pixel_id), col(RelayKey.id))
    if pixel_id is not None:
        query = query.where(col(RelayKey.pixel_id) == pixel_id)
    return list(session.scalars(query))


def key_matches(session: Session, *, pixel_id: str, presented: str) -> bool:
    """Whether ``presented`` is a live key of this pixel. Every live hash of the pixel is compared in
    constant time, so the answer's timing says nothing about how close a guess came."""
    if not presented.startswith(KEY_PREFIX):
        return False
    wanted = key_hash(presented)
    hashes = session.scalars(select(col(RelayKey.key_hash)).where(col(RelayKey.pixel_id) == pixel_id,
                                                              col(RelayKey.revoked_at).is_(None)))
    found = False
    for stored in hashes:
        found |= hmac.compare_digest(stored, wanted)
    return found
