"""rehash: switch the pixel's relay to repair mode, and prepare stored events for re-sending with
correct hashes (``prepare_user_data(..., repair=True)``: placeholder hashes, non-SHA-256 hex and
malformed cookies dropped, upper-case hex lower-cased, raw values normalized and hashed)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tools.fixes.trail import record
from tools.ledger.models import Pixel
from tools.meta.userdata import prepare_user_data
from tools.timeutil import as_utc

REPAIR_MODE = "repair"


def rehash_payload(payload: Mapping[str, Any], *, default_country: str = "US") -> tuple[dict[str, Any],
                                                                                      dict[str, str]]:
    """The event with its ``user_data`` re-prepared in repair mode (a new dict; everything outside
    ``user_data`` untouched) and, per field that changed, ``"dropped"`` or ``"rehashed"``."""
    event = copy.deepcopy(dict(payload))
    user_data = event.get("user_data")
    before: dict[str, Any] = user_data if isinstance(user_data, dict) else {}
    after = prepare_user_data(before, default_country=default_country, repair=True).user_data
    changes: dict[str, str] = {}
    for name, value in before.items():
        if name not in after:
            changes[name] = "dropped"
        elif after[name] != value:
            changes[name] = "rehashed"
    event["user_data"] = after
    return event, changes


def pixel_default_country(session: Session, pixel_id: str) -> str:
    row = session.get(Pixel, pixel_id)
    country = (row.settings or {}).get("default_country") if row is not None else None
    return str(country or "US").upper()


def pixel_default_currency(session: Session, pixel_id: str) -> str | None:
    """The pixel's configured ``default_currency`` (ISO 4217), or None: nothing is guessed."""
    row = session.get(Pixel, pixel_id)
    currency = (row.settings or {}).get("default_currency") if row is not None else None
    return str(currency).upper() if currency else None


def relay_mode(session: Session, pixel_id: str) -> str:
    row = session.get(Pixel, pixel_id)
    return str((row.settings or {}).get("relay_mode", "observe")) if row is not None else "observe"


def set_relay_mode(session: Session, *, pixel_id: str, mode: str, actor: str, at: datetime,
                   proposal_id: str) -> str:
    """Set ``pixels.settings["relay_mode"]`` (creating the pixel row if it was only seen in data) and
    write it to the trail; returns the previous mode. No commit."""
    row = session.get(Pixel, pixel_id)
    if row is None:
        row = Pixel(id=pixel_id, name="", settings={}, created_at=as_utc(at), updated_at=as_utc(at))
        session.add(row)
    previous = str((row.settings or {}).get("relay_mode", "observe"))
    # A new dict: JSON columns only notice reassignment, not in-place mutation.
    row.settings = {**(row.settings or {}), "relay_mode": mode}
    row.updated_at = as_utc(at)
    session.flush()
    if previous != mode:
        record(session, proposal_id=proposal_id, actor=actor, action="relay_mode_changed", at=at,
               detail={"from": previous, "to": mode})
    return previous
