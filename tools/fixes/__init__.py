"""Safe fixes (docs/design.md §5): replay, repair_and_replay and rehash, each run as
plan -> preview -> execute -> verify, with an audit trail.

- ``types``: ``FixParams``, ``FixPreview``, ``FixProposal``, ``ExecutionResult``, ``Verification``, errors.
- ``models``: the ``fix_proposals``, ``fix_chunks`` (execution journal) and ``fix_trail`` tables.
- ``selection``: which ledger events a fix touches, and why others are skipped.
- ``repair`` / ``rehash``: the per-event payload changes of repair_and_replay and rehash.
- ``preview``: ``build_preview`` (a pure read of the ledger).
- ``planner``: ``propose_fix``, ``get_proposal``, ``list_proposals``, ``decide``, ``expire_proposals``.
- ``execute``: ``execute_fix`` (journaled, resumable, idempotent by proposal id), ``release_uncertain``.
- ``verify``: ``verify_fix``. ``trail``: ``record``, ``trail``.
"""
