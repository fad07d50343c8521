"""Alembic migrations of the ledger (packaged so ``migrate()`` works from an installed package)."""
