"""Alembic environment: runs on the connection handed over by ``tools.ledger.db.migrate``
(or, from the alembic command line, on ``sqlalchemy.url`` / ``CAPI_DATABASE_URL``)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from tools.fixes import models as _fix_models  # noqa: F401  (fix tables join the metadata)
from tools.ledger import models as _ledger_models  # noqa: F401  (the ledger's tables)
from tools.ledger import outbox as _outbox_models  # noqa: F401  (outbox joins the metadata)
from tools.ledger.db import DEFAULT_DATABASE_URL, make_engine
from tools.schedule import claims as _claim_models  # noqa: F401  (audit_claims joins the metadata)

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "CAPI_DATABASE_URL", DEFAULT_DATABASE_URL)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
