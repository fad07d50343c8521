"""LangGraph checkpointers on the same database as the ledger.

SQLite: the checkpoint tables live in the ledger's SQLite file (their names do not clash with the
ledger's). Postgres: ``PostgresSaver`` on the same database. Either way an approval given hours later,
after a restart, resumes the run that asked for it.

Replicas started together on a fresh Postgres database would each create the checkpoint tables at
once, and all but one fail (``CREATE TABLE IF NOT EXISTS`` is not safe against a concurrent create):
the set-up runs under an advisory lock, one process after another.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import make_url

from tools.ledger.db import normalize_database_url

# pg_advisory_lock key of the checkpoint tables' set-up (any constant; "capichk" as ASCII).
SETUP_LOCK_KEY = 0x63617069636B


def _try_lock(connection: Any) -> bool:
    """Take the set-up lock if free (the pool's rows are dicts)."""
    row = connection.execute("SELECT pg_try_advisory_lock(%s) AS taken", (SETUP_LOCK_KEY,)).fetchone()
    return bool(row and row["taken"])


@contextmanager
def open_checkpointer(database_url: str) -> Iterator[BaseCheckpointSaver]:
    """A ready (set-up) checkpointer for ``database_url``; closed on exit."""
    url = make_url(normalize_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        path = url.database or ":memory:"
        conn = sqlite3.connect(path, check_same_thread=False)
        try:
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    if url.get_backend_name() == "postgresql":
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import DictRow, dict_row
        from psycopg_pool import ConnectionPool

        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # A pool: the server's threads (Slack clicks, the scheduler) share one checkpointer. The
        # connection class names the row type the pool's connections return (the saver reads dicts).
        with ConnectionPool(libpq, connection_class=Connection[DictRow], min_size=1, max_size=4, open=True,
                            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}) as pool:
            pg_saver = PostgresSaver(pool)
            with pool.connection() as lock:  # autocommit: the lock lasts until unlocked
                # Polled, not waited for: a session blocked in pg_advisory_lock is a transaction in
                # progress, and the set-up's CREATE INDEX CONCURRENTLY waits for every such one to end
                # (a deadlock the server does not detect).
                while not _try_lock(lock):
                    time.sleep(0.2)
                try:
                    pg_saver.setup()
                finally:
                    lock.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
            yield pg_saver
        return
    raise ValueError(f"no LangGraph checkpointer for {url.get_backend_name()} databases")
