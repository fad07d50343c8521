"""Recording who sends (``observe``) and the changes of it on the pixel's timeline.

Changes are judged per sender identity (``SenderInfo.identity``), so two senders that alternate
normally (a browser-side tag and a server plugin, two servers) never look like a change:

* ``version``: the identity's software (version or user agent) differs from the one it was on, and
  that fingerprint is new or had not been seen for ``REVIVAL`` (a rollback counts, a fleet where two
  versions alternate during a rollout does not, after its first switch);
* ``sender``: a new identity carries most of the pixel's server events since it appeared (at least
  ``TAKEOVER_MIN_EVENTS``), within ``TAKEOVER_WINDOW``; dated when it appeared. Senders of the pixel's
  first day (``REVIVAL``) are its starting set, not changes;
* ``fields`` / ``match_keys``: per event name, the keys the identity's events carry, judged once the
  event has ``HOUR_MIN_EVENTS`` events since it was last judged (an hour at a big shop, several at a
  small one), at the turn of an hour. A key most events carried (``USUAL_SHARE`` of at least
  ``USUAL_MIN_EVENTS``) and now absent from every one is gone; a key never seen and now carried by most
  is new. A key only some customers have (a phone number, an ad click's fbc) is neither, whatever the
  hour's luck, so it does not come and go. Dated at the first hour of the judged events;
* ``event_names``: an event name the identity first sent after its first day (``REVIVAL``), once it
  has ``HOUR_MIN_EVENTS`` events; dated at its first hour.

Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.models import table_of
from tools.ledger.rollups import dialect_insert
from tools.senders.fingerprint import EventShape, SenderInfo, event_shape, sender_from_request
from tools.senders.models import SenderChangeRow, SenderFingerprint, SenderIdentity
from tools.senders.types import SenderChange
from tools.timeutil import as_utc, floor_hour, parse_iso, to_iso

REVIVAL = timedelta(hours=24)
TAKEOVER_WINDOW = timedelta(days=7)
TAKEOVER_MIN_EVENTS = 20
TAKEOVER_SHARE = 0.5
HOUR_MIN_EVENTS = 15
USUAL_MIN_EVENTS = 20
USUAL_SHARE = 0.5
CHANGES_DAYS = timedelta(days=8)
KIND_OF_SET = {"f": "fields", "m": "match_keys"}


def _count(state: dict[str, Any], shapes: Iterable[EventShape], hour: datetime) -> None:
    counts: dict[str, Any] = state.setdefault("counts", {})
    names: dict[str, str] = state.setdefault("names", {})  # when each event name was first sent
    for shape in shapes:
        names.setdefault(shape.event_name, to_iso(hour))
        entry = counts.setdefault(shape.event_name, {"n": 0, "since": to_iso(hour), "f": {}, "m": {}})
        entry["n"] += 1
        for part, keys in (("f", shape.fields), ("m", shape.match_keys)):
            for key in keys:
                entry[part][key] = entry[part].get(key, 0) + 1


def _usual_keys(known: dict[str, Any], part: str) -> set[str]:
    """The keys most of the event's events have carried since each key was first seen."""
    total = known["n"]
    return {key for key, (count, base) in known[part].items()
            if total - base >= USUAL_MIN_EVENTS and count / (total - base) >= USUAL_SHARE}


def _judge(state: dict[str, Any], *, identity: str, first_seen: datetime) -> list[SenderChange]:
    """Judge each event name whose pending counts hold ``HOUR_MIN_EVENTS`` events (fewer wait for
    the next hours), against what the identity usually sends; update the usual; the changes found."""
    usual: dict[str, Any] = state.setdefault("usual", {})
    changes: list[SenderChange] = []
    pending: dict[str, Any] = state.get("counts", {})
    for name in sorted(pending):
        entry = pending[name]
        n = entry["n"]
        if n < HOUR_MIN_EVENTS:
            continue
        since = parse_iso(entry["since"])
        del pending[name]
        known = usual.get(name)
        if known is None:
            # New: first sent after the sender's first day (a rare event of that day is no change,
            # even when it needs days to be judged), and now with a volume.
            appeared = parse_iso(state.get("names", {}).get(name, entry["since"]))
            if usual and appeared - first_seen >= REVIVAL:
                changes.append(SenderChange(at=appeared, kind="event_names", sender=identity, before="",
                                            after=name, event_name=name))
            usual[name] = {"n": n, "f": {k: [c, 0] for k, c in entry["f"].items()},
                           "m": {k: [c, 0] for k, c in entry["m"].items()}}
            continue
        for part, kind in KIND_OF_SET.items():
            before = _usual_keys(known, part)
            # Gone: a key most events carried, absent from every event now. New: a key never seen,
            # carried by most events now. Keys some customers lack (a phone) are neither.
            removed = {key for key in before if entry[part].get(key, 0) == 0}
            added = {key for key, count in entry[part].items()
                     if key not in known[part] and known["n"] >= USUAL_MIN_EVENTS and count / n >= USUAL_SHARE}
            for key in removed:
                del known[part][key]
            for key, count in entry[part].items():
                if key in known[part]:
                    known[part][key][0] += count
                else:
                    known[part][key] = [count, known["n"]]
            if removed or added:
                changes.append(SenderChange(at=since, kind=kind, sender=identity, before=", ".join(sorted(before)),
                                            after=", ".join(sorted((before - removed) | added)), event_name=name))
        known["n"] += n
    return changes


def _others(session: Session, pixel_id: str, identity: str) -> tuple[int, str | None, datetime | None]:
    """Events of the pixel's other senders, the label of the one with the most, and when the first
    of them was first seen."""
    rows = session.execute(select(col(SenderIdentity.label), col(SenderIdentity.events),
                                  col(SenderIdentity.first_seen)).where(
        col(SenderIdentity.pixel_id) == pixel_id, col(SenderIdentity.identity) != identity)).all()
    top = max(rows, key=lambda row: row.events, default=None)
    first = min((as_utc(row.first_seen) for row in rows), default=None)
    return sum(row.events for row in rows), (top.label if top is not None else None), first


def observe(session: Session, *, pixel_id: str, info: SenderInfo, shapes: Sequence[EventShape],
            at: datetime, last: datetime | None = None, requests: int = 1) -> list[SenderChange]:
    """Record one run of events from one sender (a request, or an import's lines of one hour), first
    received ``at`` and last ``last``; store and return the changes it reveals."""
    at = as_utc(at)
    last = as_utc(last) if last is not None else at
    identity, key = info.identity, info.key()
    hour = floor_hour(at)
    changes: list[SenderChange] = []
    table = table_of(SenderIdentity)
    row: Mapping[Any, Any] | None = session.execute(  # a RowMapping, or a dict with a new state
        select(table).where(table.c.pixel_id == pixel_id, table.c.identity == identity)
        .with_for_update()).mappings().first()
    if row is None:
        others, top, since = _others(session, pixel_id, identity)
        state: dict[str, Any] = {"hour": to_iso(hour)}
        # The pixel's first senders are no change (those of its first day, which start side by side);
        # a later one may take over.
        if top is not None and since is not None and at - since >= REVIVAL and others >= TAKEOVER_MIN_EVENTS:
            state["takeover"] = {"others_at_start": others, "before": top}
        session.execute(dialect_insert(session, table).on_conflict_do_nothing(), [{
            "pixel_id": pixel_id, "identity": identity, "label": info.label, "fingerprint": key,
            "first_seen": at, "last_seen": last, "events": 0, "state": {}}])
        row = session.execute(select(table).where(table.c.pixel_id == pixel_id, table.c.identity == identity)
                              .with_for_update()).mappings().one()
        if not row["state"]:
            row = {**row, "state": state}
    current_key, label = row["fingerprint"], row["label"]
    state = dict(row["state"])
    first_seen = as_utc(row["first_seen"])

    fingerprints = table_of(SenderFingerprint)
    seen = session.execute(select(fingerprints.c.last_seen).where(
        fingerprints.c.pixel_id == pixel_id, fingerprints.c.fingerprint == key)).scalar_one_or_none()
    if seen is None:
        session.execute(dialect_insert(session, fingerprints).on_conflict_do_nothing(), [{
            "pixel_id": pixel_id, "fingerprint": key, "identity": identity, "label": info.label,
            "info": info.as_json(), "first_seen": at, "last_seen": last, "events": 0, "requests": 0}])
    if current_key != key and (seen is None or as_utc(seen) < at - REVIVAL):
        before, after = label, info.label
        if before == after:  # the same versions under another user agent: say which agents
            old = session.execute(select(fingerprints.c.info).where(
                fingerprints.c.pixel_id == pixel_id, fingerprints.c.fingerprint == current_key)).scalar_one_or_none()
            before, after = (old or {}).get("user_agent") or before, info.user_agent or after
        changes.append(SenderChange(at=at, kind="version", sender=identity, before=before, after=after))
        current_key, label = key, info.label
    session.execute(update(fingerprints).where(
        fingerprints.c.pixel_id == pixel_id, fingerprints.c.fingerprint == key).values(
        last_seen=last if seen is None else max(as_utc(seen), last),
        events=fingerprints.c.events + len(shapes), requests=fingerprints.c.requests + requests))

    events = int(row["events"]) + len(shapes)
    takeover = state.get("takeover")
    if takeover is not None:
        if at - first_seen > TAKEOVER_WINDOW:
            state.pop("takeover")
        else:
            others, _top, _since = _others(session, pixel_id, identity)
            others_since = max(0, others - int(takeover["others_at_start"]))
            if events >= TAKEOVER_MIN_EVENTS and events / (events + others_since) > TAKEOVER_SHARE:
                changes.append(SenderChange(at=first_seen, kind="sender", sender=identity,
                                            before=str(takeover["before"]), after=info.label))
                state.pop("takeover")

    counted = parse_iso(state["hour"]) if state.get("hour") else None
    if counted is not None and hour > counted:
        changes.extend(_judge(state, identity=identity, first_seen=first_seen))
    if counted is None or hour > counted:
        state["hour"] = to_iso(hour)
    _count(state, shapes, hour)
    session.execute(update(table).where(table.c.pixel_id == pixel_id, table.c.identity == identity).values(
        label=label, fingerprint=current_key, events=events, state=state,
        last_seen=max(as_utc(row["last_seen"]), last)))
    store_changes(session, pixel_id=pixel_id, changes=changes, now=last)
    return changes


def store_changes(session: Session, *, pixel_id: str, changes: Sequence[SenderChange], now: datetime) -> None:
    if not changes:
        return
    session.execute(dialect_insert(session, table_of(SenderChangeRow)).on_conflict_do_nothing(), [{
        "pixel_id": pixel_id, "at": as_utc(c.at), "kind": c.kind, "sender": c.sender[:200],
        "event_name": c.event_name[:200], "before": c.before[:1000], "after": c.after[:1000],
        "recorded_at": as_utc(now)} for c in changes])


def record_request_sender(session: Session, *, pixel_id: str, user_agent: str | None,
                          params: Mapping[str, Any], events: Sequence[Any], at: datetime) -> list[SenderChange]:
    """The relay's call: who sent this /events request (HTTP User-Agent, partner_agent) and the shape
    of its events. A request that names no software at all is not fingerprinted."""
    info = sender_from_request(user_agent, params)
    if not info.as_json():
        return []
    shapes = [shape for shape in (event_shape(event) for event in events) if shape is not None]
    return observe(session, pixel_id=pixel_id, info=info, shapes=shapes, at=at)


def record_import_senders(session: Session, items: Sequence[Any], row_ids: Sequence[int | None]) -> None:
    """Ingest's call, after a batch is stored: the lines that carried a ``sender`` and were new
    (``row_ids[i]`` not None), one run per pixel, sender and hour of arrival, in time order."""
    runs: dict[tuple[str, str, datetime], list[tuple[datetime, SenderInfo, EventShape]]] = {}
    for item, row_id in zip(items, row_ids, strict=True):
        info = getattr(item, "sender", None)
        if info is None or row_id is None:
            continue
        shape = event_shape(item.event)
        if shape is None:
            continue
        received = as_utc(item.received_at)
        runs.setdefault((item.pixel_id, info.key(), floor_hour(received)), []).append((received, info, shape))
    for (pixel_id, _key, _hour), run in sorted(runs.items(), key=lambda kv: (min(r[0] for r in kv[1]), kv[0])):
        run.sort(key=lambda r: r[0])
        observe(session, pixel_id=pixel_id, info=run[0][1], shapes=[r[2] for r in run], at=run[0][0],
                last=run[-1][0], requests=0)


def load_sender_changes(session: Session, *, pixel_id: str, since: datetime,
                        until: datetime) -> tuple[SenderChange, ...]:
    """The pixel's changes dated in [since, until), oldest first."""
    table = table_of(SenderChangeRow)
    rows = session.execute(select(table).where(
        table.c.pixel_id == pixel_id, table.c.at >= as_utc(since), table.c.at < as_utc(until))
        .order_by(table.c.at, table.c.id)).mappings()
    return tuple(SenderChange(at=as_utc(r["at"]), kind=r["kind"], sender=r["sender"], before=r["before"],
                              after=r["after"], event_name=r["event_name"]) for r in rows)


def recent_changes(session: Session, *, pixel_id: str, until: datetime) -> tuple[SenderChange, ...]:
    """The changes an audit or a question looks at: those of the ``CHANGES_DAYS`` days before ``until``
    (an incident's onset can be up to 7 days back: Meta's replay window)."""
    return load_sender_changes(session, pixel_id=pixel_id, since=as_utc(until) - CHANGES_DAYS, until=until)


def load_senders(session: Session, *, pixel_id: str) -> list[dict[str, Any]]:
    """The pixel's senders (one line per software version), most recently seen first."""
    table = table_of(SenderFingerprint)
    rows = session.execute(select(table).where(table.c.pixel_id == pixel_id)
                           .order_by(table.c.last_seen.desc())).mappings()
    return [{"sender": r["identity"], "label": r["label"], "first_seen": to_iso(as_utc(r["first_seen"])),
             "last_seen": to_iso(as_utc(r["last_seen"])), "events": r["events"], **r["info"]} for r in rows]
