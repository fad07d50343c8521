"""Replicas of ``serve`` started together on a fresh Postgres database: each migrates the ledger and
sets up the LangGraph checkpoint tables on start, and none of them may fail because another is doing
the same at that moment."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import inspect

from agent.checkpoint import open_checkpointer
from tools.ledger.db import make_engine, migrate

pytestmark = pytest.mark.postgres
REPLICAS = 4


def start_together(job: Callable[[], None]) -> list[BaseException]:
    """Run ``job`` in REPLICAS threads released at the same instant; the errors they raised."""
    gate = threading.Barrier(REPLICAS)
    errors: list[BaseException] = []

    def run() -> None:
        gate.wait()
        try:
            job()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(REPLICAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stuck = [thread for thread in threads if thread.is_alive()]
    return errors + [TimeoutError(f"{len(stuck)} of {REPLICAS} still starting after 2 minutes")] * bool(stuck)


def test_concurrent_migrations_of_a_fresh_database_all_succeed(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        assert start_together(lambda: migrate(postgres_url)) == []
        assert "events" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_concurrent_checkpointer_setups_on_a_fresh_database_all_succeed(postgres_url: str) -> None:
    def open_one() -> None:
        with open_checkpointer(postgres_url) as saver:
            assert saver.get_tuple({"configurable": {"thread_id": "none"}}) is None

    assert start_together(open_one) == []
