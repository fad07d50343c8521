"""rehash: switch the pixel's relay to repair mode before sending, and resend stored events with
their user_data re-prepared in repair mode (``tools/fixes/rehash.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tools.fixes.kinds.base import LedgerEventKind
from tools.fixes.rehash import REPAIR_MODE, rehash_payload, relay_mode, set_relay_mode
from tools.fixes.replay import Selection
from tools.fixes.types import FixParams, ParameterChange


class Rehash(LedgerEventKind):
    name = "rehash"
    summary = ("rehash (relay repair mode: normalize and hash customer data, and repair event_time in "
               "milliseconds, value as text and a missing currency, before sending)")
    changes_events = True

    def transform(self, params: FixParams, payload: Mapping[str, Any], *, country: str
                  ) -> tuple[dict[str, Any], dict[str, str]]:
        return rehash_payload(payload, default_country=country)

    def before_execution(self, session: Session, *, pixel_id: str, params: FixParams, actor: str,
                         at: datetime, proposal_id: str) -> None:
        set_relay_mode(session, pixel_id=pixel_id, mode=REPAIR_MODE, actor=actor, at=at,
                       proposal_id=proposal_id)

    def preview_changes(self, session: Session, *, pixel_id: str, params: FixParams, selection: Selection,
                        country: str) -> list[ParameterChange]:
        changes = super().preview_changes(session, pixel_id=pixel_id, params=params, selection=selection,
                                          country=country)
        if relay_mode(session, pixel_id) != REPAIR_MODE:
            changes.insert(0, ParameterChange(parameter="relay_mode", action="set_repair", count=1))
        return changes


KIND = Rehash()
