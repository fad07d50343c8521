"""Folding of Meta stats snapshots (tools/ledger/snapshots.py): reads are exactly what they were over
the plain snapshots, the number of rows stays bounded, a fold that fails leaves everything as it was,
and two writers of one pixel on PostgreSQL are serialised."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlmodel import Session

from tools.checks.types import MetaHourlyCount
from tools.ledger import snapshots
from tools.ledger.models import MetaSnapshot
from tools.ledger.snapshots import (
    FOLD_LOOSE_MAX,
    STATS_KEEP,
    count_stats_snapshots,
    load_meta_counts,
    save_meta_counts,
    stats_horizon,
)
from tools.timeutil import HOUR

T0 = datetime(2026, 10, 1, tzinfo=UTC)
EVENTS = ("PageView", "AddToCart", "Purchase")
PLAIN, FOLDED = "plain", "folded"  # the same saves, without and with folding


def _counts(rng: random.Random, start: datetime, end: datetime, fetched: datetime) -> list[MetaHourlyCount]:
    """What Meta says at ``fetched`` of [start, end): recent hours still move, so fetches disagree;
    some series are missing from some reads (a count only one fetch has must survive)."""
    out = []
    hour = start
    while hour < end:
        for name in EVENTS:
            for source in ("browser", "server"):
                if rng.random() < 0.1:
                    continue
                settled = (fetched - hour) > timedelta(days=1)
                usual = (int(hour.timestamp()) // 3600 * 7 + len(name) * 3 + len(source)) % 50
                out.append(MetaHourlyCount(hour, name, source,  # type: ignore[arg-type]
                                           usual + (0 if settled else rng.randrange(9))))
        hour += HOUR
    return out


def _audits(seed: int, days: int) -> Iterator[tuple[datetime, datetime, datetime, datetime]]:
    """(fetched_at, window_start, window_end, history_start) of hourly audits over ``days``: the first reads
    4 weeks, the others the last day; one in ~8 stored late with an earlier fetch time (a replica's
    round that finished after the next one), one in ~15 with the same fetch time as the one before,
    one in ~25 an audit of an hour up to a day and a half back stored only now (its fetch falls among
    those already folded)."""
    rng = random.Random(seed)
    previous = T0
    for n in range(days * 24):
        end = T0 + n * HOUR
        fetched = end + timedelta(minutes=rng.randrange(1, 50))
        roll = rng.random()
        if roll < 0.12 and n > 2:
            fetched = end - timedelta(minutes=rng.randrange(1, 150))  # earlier than the rows before it
        elif roll < 0.19 and n > 0:
            fetched = previous  # a tie: the id decides
        elif roll < 0.23 and n > 40:
            end -= HOUR * rng.randrange(3, 36)
            fetched = end + timedelta(minutes=rng.randrange(1, 50))
        previous = fetched
        history_start = end - timedelta(weeks=4)
        start = history_start if n == 0 else end - timedelta(days=1) - HOUR * rng.randrange(0, 3)
        yield fetched, start, end, history_start


def _save_both(session: Session, rng: random.Random, fetched: datetime, start: datetime, end: datetime,
               history_start: datetime) -> None:
    counts = _counts(rng, start, end, fetched)
    for pixel, fold in ((PLAIN, False), (FOLDED, True)):
        save_meta_counts(session, pixel_id=pixel, counts=counts, fetched_at=fetched, window_start=start,
                         window_end=end, history_start=history_start, fold=fold)


def _windows(rng: random.Random, end: datetime, n: int) -> list[tuple[datetime, datetime]]:
    """The audit's own read, and random windows an audit, a summary or a chart may ask (none older than
    the fold keeps)."""
    oldest = stats_horizon(end)
    windows = [(end - timedelta(weeks=4), end), (end - timedelta(days=1), end)]
    span = int((end - oldest) / HOUR)
    for _ in range(n):
        a = oldest + HOUR * rng.randrange(0, span + 1)
        b = a + HOUR * rng.randrange(1, span + 4)
        windows.append((a, b))
    return windows


def _assert_same(session: Session, windows: list[tuple[datetime, datetime]]) -> None:
    for start, end in windows:
        plain = load_meta_counts(session, pixel_id=PLAIN, start=start, end=end)
        folded = load_meta_counts(session, pixel_id=FOLDED, start=start, end=end)
        assert folded == plain, (start, end)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_month_of_hourly_saves_reads_the_same_with_few_rows(ledger_engine: Engine, seed: int) -> None:
    rng = random.Random(seed * 7919)
    days = 31 if seed == 1 else 17  # both go past the 6 weeks a fold keeps (the first read is 4 weeks)
    with Session(ledger_engine) as session:
        latest_end = T0
        for n, (fetched, start, end, history_start) in enumerate(_audits(seed, days)):
            _save_both(session, rng, fetched, start, end, history_start)
            if n % 3 == 0:
                session.commit()
            latest_end = max(latest_end, end)
            rows = count_stats_snapshots(session, pixel_id=FOLDED)
            # Out-of-order saves rank after nothing newer, so every save leaves at most the fold and
            # FOLD_LOOSE_MAX plain rows, plus the few ranked after the one just saved.
            assert rows <= FOLD_LOOSE_MAX + 4, (n, rows)
            if n % 23 == 0:
                _assert_same(session, _windows(rng, latest_end, 6))
        _assert_same(session, _windows(rng, latest_end, 60))
        assert count_stats_snapshots(session, pixel_id=PLAIN) == days * 24
        # Hours older than the fold keeps are gone from it (and only those).
        oldest = min(c.hour for c in load_meta_counts(session, pixel_id=FOLDED, start=T0 - timedelta(weeks=9),
                                                      end=latest_end))
        assert latest_end - STATS_KEEP - timedelta(days=1) <= oldest <= latest_end - STATS_KEEP


def test_a_pixel_with_longer_baselines_keeps_them(ledger_engine: Engine) -> None:
    """``history_start`` further back than the usual 4 weeks keeps that history plus the margin."""
    rng = random.Random(5)
    with Session(ledger_engine) as session:
        for n in range(24 * 3):
            end = T0 + n * HOUR
            start = end - timedelta(weeks=8) if n == 0 else end - timedelta(days=1)
            counts = _counts(rng, start, end, end)
            for pixel, fold in ((PLAIN, False), (FOLDED, True)):
                save_meta_counts(session, pixel_id=pixel, counts=counts, fetched_at=end, window_start=start,
                                 window_end=end, history_start=end - timedelta(weeks=8), fold=fold)
        session.commit()
        end = T0 + 71 * HOUR
        _assert_same(session, [(end - timedelta(weeks=8), end), (T0 - timedelta(weeks=8), end)])


def test_a_fold_that_fails_leaves_every_snapshot(ledger_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold runs in the save's transaction: if it fails after rewriting the fold's row (before the
    members are deleted), the rollback restores every snapshot and the new one is not stored."""
    rng = random.Random(3)
    audits = list(_audits(3, 2))
    with Session(ledger_engine) as session:
        for fetched, start, end, history_start in audits[:FOLD_LOOSE_MAX + 1]:
            _save_both(session, rng, fetched, start, end, history_start)
        session.commit()
        assert count_stats_snapshots(session, pixel_id=FOLDED) == FOLD_LOOSE_MAX + 1  # the next save folds
        before = session.execute(select(MetaSnapshot.id, MetaSnapshot.body, MetaSnapshot.window_start)
                                 .where(MetaSnapshot.pixel_id == FOLDED).order_by(MetaSnapshot.id)).all()

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("power cut")

        monkeypatch.setattr(snapshots, "delete", crash)
        fetched, start, end, history_start = audits[FOLD_LOOSE_MAX + 1]
        with pytest.raises(RuntimeError):
            save_meta_counts(session, pixel_id=FOLDED, counts=_counts(rng, start, end, fetched), fetched_at=fetched,
                             window_start=start, window_end=end, history_start=history_start)
        session.rollback()
        after = session.execute(select(MetaSnapshot.id, MetaSnapshot.body, MetaSnapshot.window_start)
                                .where(MetaSnapshot.pixel_id == FOLDED).order_by(MetaSnapshot.id)).all()
        assert after == before
        monkeypatch.undo()
        # And the save that did not happen can happen again: the fold then runs to the end.
        for fetched, start, end, history_start in audits[FOLD_LOOSE_MAX + 1:]:
            _save_both(session, rng, fetched, start, end, history_start)
        session.commit()
        assert count_stats_snapshots(session, pixel_id=FOLDED) < count_stats_snapshots(session, pixel_id=PLAIN)
        _assert_same(session, _windows(rng, audits[-1][2], 20))


@pytest.mark.postgres
def test_two_writers_of_one_pixel_fold_one_after_the_other(postgres_url: str) -> None:
    """Two replicas storing the same pixel's snapshots at once: the second fold waits for the first
    transaction (an advisory lock, seen in pg_locks), and the reads are those of the plain snapshots."""
    from tools.ledger.db import make_engine, migrate

    engine = make_engine(postgres_url)
    migrate(engine)
    try:
        rng = random.Random(11)
        audits = list(_audits(11, 2))
        with Session(engine) as session:
            for fetched, start, end, history_start in audits[:FOLD_LOOSE_MAX]:
                _save_both(session, rng, fetched, start, end, history_start)
            session.commit()
        (fa, sa, ea, ha), (fb, sb, eb, hb) = audits[FOLD_LOOSE_MAX:FOLD_LOOSE_MAX + 2]
        counts_a, counts_b = _counts(rng, sa, ea, fa), _counts(rng, sb, eb, fb)
        with Session(engine) as session:
            for counts, fetched, start, end, hist in ((counts_a, fa, sa, ea, ha), (counts_b, fb, sb, eb, hb)):
                save_meta_counts(session, pixel_id=PLAIN, counts=counts, fetched_at=fetched, window_start=start,
                                 window_end=end, history_start=hist, fold=False)
            session.commit()
        first = Session(engine)
        save_meta_counts(first, pixel_id=FOLDED, counts=counts_a, fetched_at=fa, window_start=sa, window_end=ea,
                         history_start=ha)  # folds, holds the lock until commit
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with Session(engine) as session:
                    save_meta_counts(session, pixel_id=FOLDED, counts=counts_b, fetched_at=fb, window_start=sb,
                                     window_end=eb, history_start=hb)
                    session.commit()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        with Session(engine) as probe:
            waiting = 0
            for _ in range(600):  # up to a minute for the second writer to reach the lock
                waiting = probe.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                            "AND NOT granted")) or 0
                if waiting:
                    break
                threading.Event().wait(0.1)
        assert waiting == 1 and thread.is_alive()
        first.commit()
        first.close()
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors
        with Session(engine) as session:
            _assert_same(session, _windows(rng, eb, 30))
            assert count_stats_snapshots(session, pixel_id=FOLDED) <= FOLD_LOOSE_MAX + 1
    finally:
        engine.dispose()


def test_a_late_save_among_folded_fetches_reads_the_same(ledger_engine: Engine) -> None:
    """A snapshot fetched before some of those already folded (an audit stored late) wins only over
    the fetches older than it, before and after it is folded in turn."""
    rng = random.Random(13)
    with Session(ledger_engine) as session:
        for n in range(FOLD_LOOSE_MAX * 2):
            end = T0 + n * HOUR
            start = end - timedelta(days=2) if n == 0 else end - timedelta(days=1)
            _save_both(session, rng, end + timedelta(minutes=10), start, end, end - timedelta(weeks=4))
        session.commit()
        assert count_stats_snapshots(session, pixel_id=FOLDED) < FOLD_LOOSE_MAX * 2
        late_end = T0 + 4 * HOUR
        _save_both(session, rng, late_end + timedelta(minutes=20), late_end - timedelta(days=1), late_end,
                   late_end - timedelta(weeks=4))
        session.commit()
        last = T0 + FOLD_LOOSE_MAX * 2 * HOUR
        windows = [(last - timedelta(days=3), last), (T0 - timedelta(hours=5), T0 + 5 * HOUR),
                   (T0 + 3 * HOUR, T0 + 4 * HOUR)]
        _assert_same(session, windows)
        for n in range(FOLD_LOOSE_MAX * 2, FOLD_LOOSE_MAX * 4):
            end = T0 + n * HOUR
            _save_both(session, rng, end + timedelta(minutes=10), end - timedelta(days=1), end,
                       end - timedelta(weeks=4))
        session.commit()
        _assert_same(session, windows)
