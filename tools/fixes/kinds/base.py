"""What a fix kind is: the small object each module under ``tools/fixes/kinds/`` exposes as ``KIND``.

The journaled execution (``tools/fixes/execute.py``) and the preview (``preview.py``) are the same for
every kind; a kind says only what differs:

- ``params_model``: its typed parameters (a ``FixParams`` subclass, validated before anything runs);
- ``select``: the items it would send "at" a time (ledger event rows, or order rows), and how many it
  leaves out and why; the journal plans chunks of these ids;
- ``prepare_chunk``: at send time, the same rules again on one chunk (the plan may be hours old) and
  the events to send, transformed if the kind changes them;
- ``before_execution``: a step committed with the plan (e.g. the relay's repair mode);
- ``ledger_rows``: the ledger event rows a sent chunk's delivery is recorded against;
- ``preview_changes``: what it would change in the events, for the person approving.

``LedgerEventKind`` is the base of the kinds that resend events the ledger already holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from tools.fixes.replay import (
    Selection,
    current_rows,
    iter_payloads,
    load_payloads,
    select_events,
    too_old_cutoff,
)
from tools.fixes.types import FixParams, ParameterChange
from tools.timeutil import as_utc


@dataclass
class PreparedChunk:
    """One chunk made ready to send: the journal ids in the request, their events (same order), and
    the chunk's other ids by the reason they are left out."""

    ids: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


class FixKindSpec:
    """A runnable fix kind. Subclasses set the class attributes and implement ``select`` and
    ``prepare_chunk``; the other steps have defaults that do nothing special."""

    name: ClassVar[str]
    # One line for people and for the chat tool's description of ``kind``.
    summary: ClassVar[str]
    params_model: ClassVar[type[FixParams]] = FixParams
    # Whether the chat's propose_fix tool may ask for it (its parameters fit since/until/event_names).
    proposable_in_chat: ClassVar[bool] = True
    # Plan-time skip reasons that only say "not this fix's business" (left out of the result's skips).
    out_of_scope: ClassVar[frozenset[str]] = frozenset()
    # Whether a request Meta refused is recorded as a ledger delivery (the ids are ledger events).
    records_failed_requests: ClassVar[bool] = True

    def parse_params(self, params: Mapping[str, Any]) -> FixParams:
        """Validated parameters (pydantic ValidationError, a ValueError, otherwise)."""
        return self.params_model.model_validate(dict(params))

    def select(self, session: Session, *, pixel_id: str, params: FixParams, at: datetime) -> Selection:
        raise NotImplementedError

    def prepare_chunk(self, session: Session, *, pixel_id: str, params: FixParams, ids: Sequence[int],
                      send_at: datetime, country: str, proposal_id: str) -> PreparedChunk:
        raise NotImplementedError

    def before_execution(self, session: Session, *, pixel_id: str, params: FixParams, actor: str,
                         at: datetime, proposal_id: str) -> None:
        """Committed with the plan, before the first request. Nothing by default."""

    def ledger_rows(self, session: Session, *, pixel_id: str, ids: Sequence[int],
                    events: Sequence[Mapping[str, Any]], at: datetime) -> list[int]:
        """The ledger events a sent chunk's delivery is recorded against (by default its own ids)."""
        return list(ids)

    def preview_changes(self, session: Session, *, pixel_id: str, params: FixParams, selection: Selection,
                        country: str) -> list[ParameterChange]:
        """Per parameter and action, how many events the fix would change. None by default."""
        return []


class LedgerEventKind(FixKindSpec):
    """A kind that resends undelivered events the ledger holds (journal ids: ``events.id``)."""

    out_of_scope = frozenset({"already_delivered", "status_not_selected"})
    # Whether ``transform`` may change events (the preview then reads their payloads).
    changes_events: ClassVar[bool] = False

    def row_skip(self, row: Mapping[str, Any], params: FixParams) -> str | None:
        """A kind's own reason to leave an undelivered event out (None: the common rules decide)."""
        return None

    def transform(self, params: FixParams, payload: Mapping[str, Any], *, country: str
                  ) -> tuple[dict[str, Any], dict[str, str]]:
        """What is sent for one stored event, and per changed field the action taken. The stored
        event as it is by default (event_id and event_time kept)."""
        return dict(payload), {}

    def select(self, session: Session, *, pixel_id: str, params: FixParams, at: datetime) -> Selection:
        return select_events(session, pixel_id=pixel_id, params=params, at=at,
                             row_skip=lambda row: self.row_skip(row, params))

    def prepare_chunk(self, session: Session, *, pixel_id: str, params: FixParams, ids: Sequence[int],
                      send_at: datetime, country: str, proposal_id: str) -> PreparedChunk:
        rows = current_rows(session, pixel_id=pixel_id, event_ids=ids)
        prepared = PreparedChunk()
        prepared.skipped["missing"] = len(ids) - len(rows)
        cutoff = too_old_cutoff(send_at)
        wanted = []
        for row in rows:
            reason = _send_skip_reason(row, cutoff)
            if reason is None:
                wanted.append(row["id"])
            else:
                prepared.skipped[reason] += 1
        payloads = load_payloads(session, wanted)
        for event_id in wanted:
            payload = payloads.get(event_id)
            if payload is None:
                prepared.skipped["no_payload"] += 1
                continue
            event, _ = self.transform(params, payload, country=country)
            prepared.ids.append(event_id)
            prepared.events.append(event)
        prepared.skipped = +prepared.skipped
        return prepared

    def preview_changes(self, session: Session, *, pixel_id: str, params: FixParams, selection: Selection,
                        country: str) -> list[ParameterChange]:
        if not self.changes_events:
            return []
        changes: Counter[tuple[str, str]] = Counter()
        for _, payload in iter_payloads(session, [c.id for c in selection.eligible]):
            if payload is not None:
                _, changed = self.transform(params, payload, country=country)
                changes.update(changed.items())
        return [ParameterChange(parameter=name, action=action, count=count)
                for (name, action), count in sorted(changes.items())]


def _send_skip_reason(row: Mapping[str, Any], cutoff: datetime) -> str | None:
    """Checked again right before sending: the plan may be hours old."""
    if row["delivery_status"] == "delivered":
        return "already_delivered"
    if row["delivery_status"] in ("sending", "uncertain"):  # the relay's forwarder holds or held them
        return "in_flight_elsewhere"
    if as_utc(row["event_time"]) < cutoff:
        return "too_old"
    if not row["has_payload"]:
        return "no_payload"
    return None
