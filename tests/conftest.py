"""Fixtures are grouped by tier in tests/fixtures/: databases (SQLite and Postgres) and the Graph API
simulator served over loopback."""

pytest_plugins = ["tests.fixtures.db", "tests.fixtures.meta", "tests.fixtures.llm", "tests.fixtures.slack"]
