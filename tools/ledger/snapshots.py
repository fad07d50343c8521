"""Snapshots of what Meta reported (pixel stats, dataset quality), each kept with its fetch time.

Bodies are stored as the typed dataclasses of ``tools.checks.types`` turned into JSON, so that
reading them back gives exactly what the Graph API client produced.

Stats snapshots are folded as they are stored (``fold_stats``): an hourly audit stores one, and
without folding every audit would read back all of them (~670 after 4 weeks, ~200,000 counts decoded
to keep ~8,000, growing with the pixel's age). Once a pixel has more than ``FOLD_LOOSE_MAX`` plain
snapshots fetched no later than the new one, all but the newest ``FOLD_KEEP_NEWEST`` are merged into
one "folded" snapshot: per (hour, event, source) the count of the latest fetch, with that fetch's
(fetched_at, id) kept as the count's origin, so that ``load_meta_counts`` still picks the latest fetch
per count exactly as it did over the plain snapshots, whatever order snapshots arrive in. Hours older
than ``STATS_KEEP`` before the new snapshot's window end are dropped from the fold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import DedupeKeyFeedback, EventQuality, MetaHourlyCount, QualitySnapshot
from tools.ledger.models import MetaSnapshot, table_of
from tools.timeutil import as_utc, parse_iso, to_iso

SnapshotKind = Literal["stats", "dataset_quality"]


def save_snapshot(session: Session, *, pixel_id: str, kind: SnapshotKind, fetched_at: datetime,
                  body: dict[str, Any], window_start: datetime | None = None,
                  window_end: datetime | None = None) -> int:
    """Store one read of Meta (a JSON body); returns the snapshot id. No commit."""
    row = {"pixel_id": pixel_id, "kind": kind, "fetched_at": as_utc(fetched_at), "body": body,
           "window_start": None if window_start is None else as_utc(window_start),
           "window_end": None if window_end is None else as_utc(window_end)}
    table = table_of(MetaSnapshot)
    return int(session.execute(insert(table).returning(table.c.id), [row]).scalar_one())


def quality_to_json(snapshot: QualitySnapshot) -> dict[str, Any]:
    return {"fetched_at": to_iso(snapshot.fetched_at), "events": [asdict(e) for e in snapshot.events]}


def quality_from_json(body: dict[str, Any]) -> QualitySnapshot:
    events = []
    for item in body.get("events", []):
        feedback = tuple(DedupeKeyFeedback(**fb) for fb in item.get("dedupe_key_feedback", ()))
        events.append(EventQuality(**{**item, "dedupe_key_feedback": feedback}))
    return QualitySnapshot(fetched_at=parse_iso(body["fetched_at"]), events=tuple(events))


def save_quality_snapshot(session: Session, *, pixel_id: str, snapshot: QualitySnapshot) -> int:
    return save_snapshot(session, pixel_id=pixel_id, kind="dataset_quality",
                         fetched_at=snapshot.fetched_at, body=quality_to_json(snapshot))


def load_quality_history(session: Session, *, pixel_id: str, since: datetime,
                         until: datetime) -> tuple[QualitySnapshot, ...]:
    """Dataset-quality snapshots fetched in [since, until), oldest first."""
    query = (select(col(MetaSnapshot.body)).where(
        col(MetaSnapshot.pixel_id) == pixel_id, col(MetaSnapshot.kind) == "dataset_quality",
        col(MetaSnapshot.fetched_at) >= as_utc(since), col(MetaSnapshot.fetched_at) < as_utc(until))
        .order_by(col(MetaSnapshot.fetched_at), col(MetaSnapshot.id)))
    return tuple(quality_from_json(body) for body in session.scalars(query))


# Stats hours kept by a fold, counted back from the end of the window just stored. The furthest
# back any reader goes is 4 weeks before the hour audited or summarised: the audit's history
# (``Thresholds.baseline_weeks``, 4 by default, in which the checks' 28-day references and 7-day
# look-back both lie), a daily summary's 4 weeks of usual levels before its day, a weekly report's
# two weeks, an incident chart's 9 days. 28 days + the 7-day look-back + 7 days of margin (a summary
# or an audit run late for an earlier hour, replicas whose clocks or rounds differ) = 6 weeks. A pixel
# whose baselines look further back passes its ``history_start`` and keeps that plus the same margin.
# Like payload retention (agent/retention.py) this drops only what no audit can read: and should one
# ask for older hours all the same, the fold's window starts at the horizon, so ``_fetch_start`` in
# tools/audit/meta_side.py sees them uncovered and reads them from Meta again.
STATS_KEEP = timedelta(days=42)
STATS_KEEP_MARGIN = timedelta(days=14)
# Fold once more than this many plain snapshots wait (so a read touches at most one fold and about
# this many plain ones, and the fold is rewritten once every few audits, not every audit) ...
FOLD_LOOSE_MAX = 8
# ... keeping the newest few as Meta sent them (the last reads stay readable as they were).
FOLD_KEEP_NEWEST = 2

_Rank = tuple[datetime, int]  # (fetched_at, id): the order in which fetches supersede each other
_Key = tuple[datetime, str, str]  # (hour, event_name, source)


def save_meta_counts(session: Session, *, pixel_id: str, counts: tuple[MetaHourlyCount, ...] | list[
        MetaHourlyCount], fetched_at: datetime, window_start: datetime, window_end: datetime,
        history_start: datetime | None = None, fold: bool = True) -> int:
    """Store one read of ``/{pixel}/stats`` (hourly counts per event and source), then fold the pixel's
    older stats snapshots in the same transaction (``fold_stats``; ``fold=False`` only for the
    benchmark's "before"). ``history_start``: the earliest hour the pixel's audits read, when it
    is further back than the usual 4 weeks. No commit."""
    body = {"counts": [{"hour": to_iso(c.hour), "event_name": c.event_name, "source": c.source,
                        "count": c.count} for c in counts]}
    snapshot_id = save_snapshot(session, pixel_id=pixel_id, kind="stats", fetched_at=fetched_at, body=body,
                                window_start=window_start, window_end=window_end)
    if fold:
        fold_stats(session, pixel_id=pixel_id, upto=(as_utc(fetched_at), snapshot_id),
                   keep_from=stats_horizon(window_end, history_start))
    return snapshot_id


def stats_horizon(window_end: datetime, history_start: datetime | None = None) -> datetime:
    """The oldest hour a fold keeps for a snapshot whose window ends at ``window_end``."""
    horizon = as_utc(window_end) - STATS_KEEP
    if history_start is not None:
        horizon = min(horizon, as_utc(history_start) - STATS_KEEP_MARGIN)
    return horizon


def lock_pixel_stats(session: Session, pixel_id: str) -> None:
    """Serialise the folds of one pixel's stats until the transaction ends. On PostgreSQL a
    transaction-level advisory lock (two ``serve`` replicas may store the same pixel's snapshots at
    once; a fold reads, rewrites and deletes rows, which must not interleave with another fold). On
    SQLite the snapshot just inserted already holds the database's write lock."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"meta_snapshots/stats/{pixel_id}".encode(), digest_size=8).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": int.from_bytes(digest, "big", signed=True)})


def fold_stats(session: Session, *, pixel_id: str, upto: _Rank, keep_from: datetime) -> int:
    """Merge the pixel's stats snapshots ranked no later than ``upto`` into one folded snapshot once more
    than ``FOLD_LOOSE_MAX`` plain ones are waiting; returns how many rows were folded (0: none).

    The fold takes the row of its newest member (an UPDATE) and deletes the others, in the caller's
    transaction: a crash before commit leaves every snapshot as it was."""
    lock_pixel_stats(session, pixel_id)
    table = table_of(MetaSnapshot)
    rank_upto = (as_utc(upto[0]), upto[1])
    rows = session.execute(
        select(table.c.id, table.c.fetched_at, table.c.window_start, table.c.window_end)
        .where(table.c.pixel_id == pixel_id, table.c.kind == "stats")
        .order_by(table.c.fetched_at, table.c.id)).all()
    members = [row for row in rows if (as_utc(row.fetched_at), row.id) <= rank_upto]
    # Which members are folds is in their bodies, not worth decoding here: with at most one fold
    # among them (more only after out-of-order saves, which then fold a little sooner), more than
    # FOLD_LOOSE_MAX + 1 members means more than FOLD_LOOSE_MAX plain ones.
    if len(members) <= FOLD_LOOSE_MAX + 1:
        return 0
    merge = members[:-FOLD_KEEP_NEWEST]
    merge.sort(key=lambda row: (as_utc(row.fetched_at), row.id))
    keep_from = as_utc(keep_from)
    bodies = {row.id: row.body for row in session.execute(select(table.c.id, table.c.body).where(
        table.c.id.in_([row.id for row in merge])))}
    latest: dict[_Key, tuple[_Rank, int]] = {}
    for row in merge:
        for key, rank, count in _ranked_counts(bodies[row.id], (as_utc(row.fetched_at), row.id)):
            if key[0] >= keep_from:
                old = latest.get(key)
                if old is None or old[0] <= rank:
                    latest[key] = (rank, count)
    head = merge[-1]
    starts = [as_utc(row.window_start) for row in merge if row.window_start is not None]
    ends = [as_utc(row.window_end) for row in merge if row.window_end is not None]
    # The fold covers what its members covered, less what it dropped: the min/max of the windows
    # are what meta_side reads as "already read from Meta".
    window_start = max(min(starts), keep_from) if starts else None
    window_end = max(ends) if ends else None
    if window_start is not None and window_end is not None and window_start > window_end:
        window_start = window_end
    session.execute(update(table).where(table.c.id == head.id).values(
        body=_folded_body(latest, len(merge)), window_start=window_start, window_end=window_end))
    session.execute(delete(table).where(table.c.id.in_([row.id for row in merge[:-1]])))
    return len(merge)


def _folded_body(latest: dict[_Key, tuple[_Rank, int]], members: int) -> dict[str, Any]:
    """A fold's body: rows [hour, event, source, count, origin] (lists: a third of the bytes of the
    plain form's objects, and quicker to decode), origins [fetched_at, id] indexed by the rows."""
    origins: dict[_Rank, int] = {}
    rows = []
    for (hour, name, source), (rank, count) in sorted(latest.items()):
        index = origins.setdefault(rank, len(origins))
        rows.append([to_iso(hour), name, source, count, index])
    return {"folded": members, "origins": [[to_iso(at), snapshot_id] for at, snapshot_id in origins],
            "rows": rows}


def _origins(body: dict[str, Any]) -> list[_Rank]:
    return [(parse_iso(at), int(snapshot_id)) for at, snapshot_id in body["origins"]]


def _ranked_counts(body: dict[str, Any], rank: _Rank, hours: dict[str, datetime] | None = None,
                   origins: list[_Rank] | None = None) -> Iterable[tuple[_Key, _Rank, int]]:
    """The counts of one stats snapshot, each with the rank of the fetch it came from (a plain
    snapshot's own; in a fold, the origin the fold kept for it)."""
    hours = {} if hours is None else hours  # many snapshots repeat the same hours: parse each once
    if "folded" in body:
        origins = _origins(body) if origins is None else origins
        for text_hour, name, source, count, origin in body["rows"]:
            hour = hours.get(text_hour)
            if hour is None:
                hour = hours[text_hour] = parse_iso(text_hour)
            yield (hour, name, source), origins[origin], int(count)
        return
    for item in body.get("counts", []):
        text_hour = item["hour"]
        hour = hours.get(text_hour)
        if hour is None:
            hour = hours[text_hour] = parse_iso(text_hour)
        yield (hour, item["event_name"], item["source"]), rank, int(item["count"])


def load_meta_counts(session: Session, *, pixel_id: str, start: datetime,
                     end: datetime) -> tuple[MetaHourlyCount, ...]:
    """Hourly Meta counts in [start, end); where snapshots overlap, the latest fetch wins (the order
    is (fetched_at, id); a folded snapshot's counts keep the rank of the fetch they came from)."""
    table = table_of(MetaSnapshot)
    query = (select(table.c.id, table.c.fetched_at, table.c.body).where(
        table.c.pixel_id == pixel_id, table.c.kind == "stats",
        table.c.window_end > as_utc(start), table.c.window_start < as_utc(end))
        .order_by(table.c.fetched_at, table.c.id))
    start, end = as_utc(start), as_utc(end)
    # Each snapshot spans the ranks of the fetches its counts came from: a plain one its own, a fold
    # those of its origins. When these spans do not interleave (saves in fetch order, the usual case),
    # taking the snapshots in span order and letting the last one win is the same as comparing ranks
    # count by count, at the cost of the plain read.
    spans: list[tuple[_Rank, _Rank, dict[str, Any], _Rank, list[_Rank] | None]] = []
    for row in session.execute(query):
        rank = (as_utc(row.fetched_at), row.id)
        if "folded" in row.body:
            kept = _origins(row.body)
            if kept:
                spans.append((min(kept), max(kept), row.body, rank, kept))
        else:
            spans.append((rank, rank, row.body, rank, None))
    spans.sort(key=lambda span: (span[0], span[1]))
    ordered = all(before[1] < after[0] for before, after in pairwise(spans))
    latest: dict[_Key, int] = {}
    hours: dict[str, datetime] = {}
    if ordered:
        for _, _, body, rank, origins in spans:
            for key, _, count in _ranked_counts(body, rank, hours, origins):
                if start <= key[0] < end:
                    latest[key] = count
    else:  # an out-of-order save fell among a fold's fetches: compare ranks count by count
        ranked: dict[_Key, tuple[_Rank, int]] = {}
        for _, _, body, rank, origins in spans:
            for key, count_rank, count in _ranked_counts(body, rank, hours, origins):
                if start <= key[0] < end:
                    old = ranked.get(key)
                    if old is None or old[0] <= count_rank:
                        ranked[key] = (count_rank, count)
        latest = {key: count for key, (_, count) in ranked.items()}
    # Positional arguments: half the cost of keywords on the thousands of counts of 4 weeks.
    return tuple(MetaHourlyCount(h, n, s, c)  # type: ignore[arg-type]
                 for (h, n, s), c in sorted(latest.items()))


def count_stats_snapshots(session: Session, *, pixel_id: str) -> int:
    """How many stats snapshots the pixel has (tests and the benchmark)."""
    table = table_of(MetaSnapshot)
    return int(session.scalar(select(func.count()).select_from(table).where(
        table.c.pixel_id == pixel_id, table.c.kind == "stats")) or 0)
