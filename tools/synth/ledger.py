"""A scenario's ledger: a fresh, migrated database with the scenario's pixel configured, empty or with
the scenario's generated files ingested.

The demo, the evals and the benchmarks load scenarios this way; it lives here (not in ``evals``) so
that the agent's demo never depends on the eval package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.meta.simulator.state import DEFAULT_TOKEN

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from tools.ledger.pixels import PixelConfig
    from tools.synth.generator import GeneratedFiles
    from tools.synth.scenario import Scenario

# The token the Graph API simulator accepts by default (the scenarios' Meta state issues it).
SIM_TOKEN = DEFAULT_TOKEN


def empty_ledger(scenario: Scenario, *, database_url: str) -> tuple[Engine, PixelConfig]:
    """A fresh, migrated ledger with the scenario's pixel configured and nothing in it yet."""
    from sqlalchemy.orm import Session

    from tools.ledger.db import make_engine, migrate
    from tools.ledger.pixels import PixelConfig, sync_pixels

    engine = make_engine(database_url)
    migrate(engine)
    pixel = PixelConfig(id=scenario.pixel_id, name=scenario.id, timezone=scenario.timezone)
    with Session(engine) as session:
        sync_pixels(session, [pixel])
        session.commit()
    return engine, pixel


def load_scenario_ledger(scenario: Scenario, files: GeneratedFiles, *,
                         database_url: str) -> tuple[Engine, PixelConfig]:
    """A fresh, migrated ledger with the scenario's pixel configured and its files ingested."""
    from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl

    engine, pixel = empty_ledger(scenario, database_url=database_url)
    ingest_events_jsonl(session_or_engine=engine, path=files.events_path)
    ingest_orders_jsonl(session_or_engine=engine, path=files.orders_path)
    return engine, pixel
