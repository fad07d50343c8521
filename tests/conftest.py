"""Fixtures are grouped by tier in tests/fixtures/: databases (SQLite and Postgres), the Graph API
simulator served over loopback, the fake LLM and Slack servers, the relay, and scenario worlds. Each
is defined once there; a module overrides one only to change what it is (another scenario)."""

pytest_plugins = ["tests.fixtures.db", "tests.fixtures.meta", "tests.fixtures.llm", "tests.fixtures.slack",
                  "tests.fixtures.relay", "tests.fixtures.world"]
