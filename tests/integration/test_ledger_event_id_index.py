"""JSONL ingest's duplicate look-up (``pixel_id = ? AND event_id IN (...)``, tools.ledger.bulk) walks the
``(pixel_id, event_id)`` index on Postgres, not the ``(pixel_id, event_name, ...)`` one that made each
batch cost the pixel's whole history. Checked with EXPLAIN on a pixel with 50,000 stored events."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from tools.ledger.db import make_engine, migrate

PIXEL = "1234567890"
# The planner weighs IN-list probes against a scan of the pixel's rows: at 1M rows it picks this index
# for a whole chunk of 900 ids (tools.ledger.bulk._CHUNK; 14 ms vs 285 ms for the sequential scan it
# used before, docs/architecture.md); a test-sized table needs a proportionally shorter list.
ROWS = 50_000
IDS = 50


@pytest.mark.postgres
def test_duplicate_lookup_by_event_id_uses_the_pixel_event_id_index(postgres_url: str) -> None:
    engine: Engine = make_engine(postgres_url)
    migrate(engine)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO events (pixel_id, event_name, event_time, received_at, event_id, payload, flags, "
                "delivery_status, attempts, content_hash) "
                "SELECT :pixel, (ARRAY['PageView','ViewContent','AddToCart','Purchase'])[1 + n % 4], "
                "now() - n * interval '1 minute', now(), 'ev-' || n, "
                "jsonb_build_object('user_data', jsonb_build_object('em', md5(n::text) || md5(n::text))), "
                "'{}'::jsonb, 'delivered', 1, md5(n::text) FROM generate_series(1, :rows) AS n"),
                {"pixel": PIXEL, "rows": ROWS})
            connection.execute(text("ANALYZE events"))
            ids = ", ".join(f"'new-{n}'" for n in range(IDS))
            plan = "\n".join(row[0] for row in connection.execute(text(
                f"EXPLAIN SELECT event_name, event_id FROM events WHERE pixel_id = :pixel "
                f"AND event_id IN ({ids})"), {"pixel": PIXEL}))
    finally:
        engine.dispose()
    assert "ix_events_pixel_event_id" in plan, plan
    assert "ix_events_pixel_name_event_id" not in plan, plan
