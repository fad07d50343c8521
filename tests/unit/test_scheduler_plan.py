"""Which hours are due: catch-up after downtime, the grace period, the catch-up limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tools.schedule.plan import due_hours, latest_due_hour, plan_hours


def at(hour: int, minute: int = 0, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_catch_up_lists_every_missed_hour_oldest_first() -> None:
    due = due_hours(last_done=at(10), now=at(15, 12), grace=timedelta(minutes=10), max_catch_up=72)
    assert due == [at(11), at(12), at(13), at(14), at(15)]


def test_nothing_is_due_when_the_latest_hour_is_done() -> None:
    assert due_hours(last_done=at(15), now=at(15, 59), grace=timedelta(minutes=10), max_catch_up=72) == []


def test_grace_holds_back_an_hour_until_it_has_settled() -> None:
    grace = timedelta(minutes=10)
    assert latest_due_hour(at(15, 9), grace=grace) == at(14)
    assert latest_due_hour(at(15, 10), grace=grace) == at(15)
    assert due_hours(last_done=at(13), now=at(15, 5), grace=grace, max_catch_up=72) == [at(14)]
    assert due_hours(last_done=at(13), now=at(15, 10), grace=grace, max_catch_up=72) == [at(14), at(15)]


def test_first_run_audits_only_the_latest_hour() -> None:
    assert due_hours(last_done=None, now=at(15, 12), grace=timedelta(minutes=10), max_catch_up=72) == [at(15)]


def test_catch_up_is_bounded_and_older_hours_are_reported_as_skipped() -> None:
    now = at(15, 12)
    last = at(10, 12, day=15)  # five days and five hours of downtime
    plan = plan_hours(last_done=last, now=now, grace=timedelta(minutes=10), max_catch_up=72)
    assert len(plan.due) == 72
    assert plan.due[-1] == at(15)
    assert plan.due[0] == at(15) - timedelta(hours=71)
    assert plan.skipped[0] == at(11, day=15)
    assert plan.skipped[-1] == plan.due[0] - timedelta(hours=1)
    assert len(plan.skipped) + len(plan.due) == 5 * 24 + 5


def test_naive_times_are_utc_and_max_catch_up_must_be_positive() -> None:
    naive = datetime(2026, 11, 20, 10)
    assert due_hours(last_done=naive, now=at(12, 30), max_catch_up=72) == [at(11), at(12)]
    with pytest.raises(ValueError):
        due_hours(last_done=None, now=at(12), max_catch_up=0)
