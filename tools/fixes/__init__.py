"""Safe fixes (docs/design.md §5), each run as plan -> preview -> approval -> execute -> verify, with
an audit trail.

- ``registry``: the runnable kinds, by name (one module each under ``kinds/``: replay,
  repair_and_replay, rehash, backfill_from_orders); everything else derives from it.
- ``types``: ``FixParams``, ``FixPreview``, ``FixProposal``, ``ExecutionResult``, ``Verification``, errors.
- ``models``: the ``fix_proposals``, ``fix_chunks`` (execution journal) and ``fix_trail`` tables.
- ``replay``: the window, Meta's 7-day limit, and which undelivered ledger events a resending kind takes.
- ``repair`` / ``rehash``: the per-event payload changes of repair_and_replay and rehash.
- ``preview``: ``build_preview`` (a pure read of the ledger).
- ``planner``: ``propose_fix``, ``get_proposal``, ``list_proposals``, ``decide``, ``expire_proposals``.
- ``execute``: ``execute_fix`` (journaled, resumable, idempotent by proposal id), ``release_uncertain``.
- ``verify``: ``verify_fix``. ``trail``: ``record``, ``trail``.
"""
