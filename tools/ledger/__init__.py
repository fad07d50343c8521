"""The event ledger: what capi-agent recorded (events with hashed user_data, delivery attempts, the
shop's orders, reads of Meta), hourly rollups for the audits, and audits/findings/incidents.

Modules (nothing is built at import; callers pass an engine or a session):
- ``db``: ``make_engine(url)``, ``migrate(engine_or_url)`` (Alembic upgrade head), ``session_factory``.
- ``models``: the tables. ``migrations/``: the Alembic environment and revisions (packaged here).
- ``store``: ``record_events`` (relay), ``store_events``, ``purge_payloads``.
- ``deliveries``: ``record_delivery`` (one attempt and Meta's answer).
- ``ingest``: ``ingest_events_jsonl``, ``ingest_orders_jsonl`` -> ``IngestReport``.
- ``rollups``: incremental hourly rollups and ``rebuild_rollups``.
- ``inputs``: ``load_ledger_inputs`` (EventHour / DeliveryHour / OrderHour) and, re-exported,
  snapshot (``snapshots``) and audit/incident (``incidents``) storage.
- ``pixels``: ``PixelConfig``, ``load_pixels_toml``, ``sync_pixels``, ``list_pixels``.
"""
