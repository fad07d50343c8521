"""The import side: an ingest line's optional ``sender`` object rides with its event to the store,
and the stored lines' senders are recorded after each batch (``record_import_senders``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from tools.ledger.store import IncomingEvent
from tools.senders.fingerprint import SenderInfo, sender_from_envelope


@dataclass(frozen=True)
class SenderEvent(IncomingEvent):
    """An incoming event whose line named its sender."""

    sender: SenderInfo | None = None


def with_sender(item: IncomingEvent, value: Any, *, error: Callable[[str], Exception]) -> IncomingEvent:
    """``item`` with the line's ``sender`` (unchanged without one); ``error(reason)`` for a bad one."""
    info = sender_from_envelope(value, error=error)
    if info is None:
        return item
    return SenderEvent(**{f.name: getattr(item, f.name) for f in fields(item)}, sender=info)
