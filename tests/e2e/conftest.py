"""Fixtures every end-to-end module shares: the fake Slack API with the canary bot token (a token
that must never reach Slack's messages or the log), and the small scenario's world template."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agentworld import WorldTemplate, small_scenario, world_template
from tests.e2e.test_serve_world import BOT_TOKEN
from tests.fakes.slack_api import FakeSlackAPI


@pytest.fixture(scope="module")
def slack_api() -> Iterator[FakeSlackAPI]:
    """The shared fake Slack API (``fake`` resets it per test), with the canary bot token."""
    with FakeSlackAPI(bot_token=BOT_TOKEN) as api:
        yield api


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> WorldTemplate:
    return world_template(small_scenario(), tmp_path_factory)
