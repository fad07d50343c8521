"""LangGraph checkpointers on the same database as the ledger.

SQLite: the checkpoint tables live in the ledger's SQLite file (their names do not clash with the
ledger's). Postgres: ``PostgresSaver`` on the same database. Either way an approval given hours later,
after a restart, resumes the run that asked for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import make_url

from tools.ledger.db import normalize_database_url


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
            pg_saver.setup()
            yield pg_saver
        return
    raise ValueError(f"no LangGraph checkpointer for {url.get_backend_name()} databases")
