"""The Alembic migrations build exactly the schema of tools.ledger.models, on SQLite and Postgres."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from tools.ledger.db import alembic_config, make_engine, migrate, normalize_database_url
from tools.ledger.models import ALL_TABLES, SQLModel


def test_migrations_create_every_table(ledger_engine: Engine) -> None:
    tables = set(inspect(ledger_engine).get_table_names())
    assert set(ALL_TABLES) <= tables
    assert "alembic_version" in tables


def test_migrated_schema_matches_the_models(ledger_engine: Engine) -> None:
    # Tables of other packages' migrations are compared only when their models are imported.
    def known(name: str | None, type_: str, _parent: object) -> bool:
        return type_ != "table" or name in SQLModel.metadata.tables

    with ledger_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": known})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(ledger_url: str) -> None:
    migrate(ledger_url)
    migrate(ledger_url)
    engine = make_engine(ledger_url)
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine.dispose()


def test_sqlite_runs_wal_with_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    engine.dispose()


def test_bare_postgres_urls_use_psycopg3() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"
