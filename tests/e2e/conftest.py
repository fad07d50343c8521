"""The end-to-end tier's ``serve``: the parts of ``capi-agent serve`` over a copy of the ``template``
world (tests/fixtures/world.py; a module overrides ``template`` for another scenario), Slack faked.

Whatever the test did, afterwards nothing secret reached Slack or the log: not the canary customer's
e-mail, not a synthetic customer's e-mail, not the bot token and not Meta's token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentworld import WorldTemplate
from tests.e2e.test_serve_world import BOT_TOKEN, CANARY_EMAIL, ServeWorld, everything_slack_saw, serve_world
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.meta import SIM_TOKEN


@pytest.fixture
def serve(template: WorldTemplate, tmp_path: Path, fake: FakeSlackAPI,
          caplog: pytest.LogCaptureFixture) -> Iterator[ServeWorld]:
    caplog.set_level(logging.DEBUG)
    with serve_world(template, tmp_path, fake) as built:
        yield built
    seen = everything_slack_saw(fake) + caplog.text
    for secret in (CANARY_EMAIL, BOT_TOKEN, SIM_TOKEN):
        assert secret not in seen
    assert "@example.com" not in seen.lower(), "a synthetic customer's e-mail reached Slack or the log"
