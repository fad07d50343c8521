"""Offline narratives (deterministic, per root cause) and Slack-safe text."""

from __future__ import annotations

import pytest

from agent.reasoning.offline import narrate
from agent.reasoning.slack_text import slack_safe
from tests.unit.test_reasoning_toolbox import scenario
from tools.diagnosis.catalogue import CATALOGUE


def test_narrative_says_what_broke_since_when_the_evidence_and_what_to_do():
    s = scenario()
    incident = s.incidents[0]
    text = narrate(incident, s.findings)
    assert text.startswith("Access token invalid or expired for AddToCart, InitiateCheckout")
    assert "since 2026-11-24 12:00 UTC" in text  # the longest finding run is 3 hours
    assert "code 190" in text  # evidence from the tell-tale finding
    assert CATALOGUE["access_token_invalid"].manual_remedy in text
    assert "replay fix is ready for approval" in text
    assert narrate(incident, s.findings) == text  # deterministic


@pytest.mark.parametrize("kind", ["keys_lost", "raw_pii"])
def test_each_cause_gets_its_own_remedy(kind):
    s = scenario(kind)
    incident = s.incidents[0]
    text = narrate(incident, s.findings)
    info = CATALOGUE[incident.root_cause]
    assert text.startswith(info.title) and info.manual_remedy in text
    assert 2 <= text.count(". ") + 1 <= 6


def test_every_root_cause_has_an_impact_sentence():
    from agent.reasoning.offline import IMPACT

    assert set(IMPACT) == set(CATALOGUE)


@pytest.mark.parametrize(("raw", "expected"), [
    ("<!channel> token expired", "token expired"),
    ("ping <@U012AB3CD> and <#C123|general>", "ping and"),
    ("see <https://evil.example/x|the dashboard>", "see the dashboard"),
    ("see <https://shop.example/x>", "see https://shop.example/x"),
    ("hey @here look", "hey here look"),
    ("<!subteam^S123|@team> a <b> c", "a b c"),
    ("mail jane.doe@example.com now", "mail [email] now"),
])
def test_slack_safe_removes_mentions_links_and_pii(raw, expected):
    assert slack_safe(raw) == expected


def test_slack_safe_caps_length_on_a_word():
    text = slack_safe("word " * 100, limit=50)
    assert len(text) <= 50 and text.endswith("…") and "wor…" not in text
