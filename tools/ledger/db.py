"""Engines, migrations and sessions for the ledger. Nothing is built at import: call the factories.

SQLite (the default, ``sqlite:///capi-agent.db``) runs in WAL mode with foreign keys on, so the relay
can write while an audit reads. Postgres is reached through psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, cast

try:  # a dependency of langgraph; optional here
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Engine, Result, Row, create_engine, event
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

DEFAULT_DATABASE_URL = "sqlite:///capi-agent.db"
# pg_advisory_xact_lock key held while migrating (any constant; "capimig" as ASCII).
MIGRATION_LOCK_KEY = 0x636170696D6967


def json_dumps(value: Any) -> str:
    """JSON for the database's JSON columns (orjson when installed: several times faster)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value).decode()
        except TypeError:  # e.g. an integer beyond 64 bits: the standard library copes
            pass
    return json.dumps(value, separators=(",", ":"))


def normalize_database_url(url: str) -> str:
    """Point bare Postgres URLs at psycopg 3 (SQLAlchemy would otherwise pick psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL is durable across application crashes; waits instead of failing on a busy writer.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # 64 MiB page cache (default 2 MiB): the events table's unique and secondary indexes outgrow the
    # default within a million rows, and every insert then waits on page reads.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def make_engine(url: str = DEFAULT_DATABASE_URL, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite gets WAL and foreign keys on every connection."""
    url = normalize_database_url(url)
    engine_kwargs.setdefault("json_serializer", json_dumps)
    if _orjson is not None:
        engine_kwargs.setdefault("json_deserializer", _orjson.loads)
    if url.startswith("sqlite"):
        engine_kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = create_engine(url, **engine_kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **engine_kwargs)


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations packaged inside ``tools.ledger``."""
    config = Config()
    location = resources.files("tools.ledger") / "migrations"
    config.set_main_option("script_location", str(location))
    return config


def migrate(engine_or_url: Engine | str, *, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` to ``revision`` (default head). Safe to call on every start."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    config = alembic_config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together: one upgrades, the others wait, then find nothing to do.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def session_factory(engine: Engine) -> Callable[[], Session]:
    """Sessions bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False)


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed to return a plain ``Result``; for
    a DML statement it is a ``CursorResult``, which carries the count."""
    return cast(CursorResult[*tuple[Any, ...]], result).rowcount


def by_name(row: Row[*tuple[Any, ...]]) -> Mapping[str, Any]:
    """A result row as a mapping by column name. SQLAlchemy types ``Row._mapping``'s keys as names or column
    objects; the ledger's queries read their rows by name only."""
    return cast(Mapping[str, Any], row._mapping)
