"""Notifier, message blocks and chart, against the fake Slack Web API over loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agent.slack.blocks import (
    IncidentMessage,
    PixelStatusLine,
    ProposalView,
    SummaryMessage,
    escape_mrkdwn,
    incident_blocks,
)
from agent.slack.chart import ChartSeries, render_parity_chart
from agent.slack.notifier import SlackDeliveryError, SlackNotifier
from tests.fakes.slack_api import UPLOAD_METHOD, FakeSlackAPI
from tests.fixtures.slack import SLACK_TEST_TOKEN

TOKEN = SLACK_TEST_TOKEN
CHANNEL = "C0ALERTS"
START = datetime(2026, 11, 20, tzinfo=UTC)


def _chart() -> bytes:
    hours = [START + timedelta(hours=h) for h in range(12)]
    return render_parity_chart(
        [ChartSeries("Purchase", "browser", [(h, 100.0) for h in hours]),
         ChartSeries("Purchase", "server", [(h, 100.0 if i < 6 else 0.0) for i, h in enumerate(hours)]),
         ChartSeries("Purchase", "baseline", [(h, 98.0) for h in hours])],
        "Purchase: browser vs server", mark=(hours[6], hours[-1]))


def _summary() -> SummaryMessage:
    return SummaryMessage(
        title="Hourly CAPI audit", window_start=START + timedelta(hours=10),
        window_end=START + timedelta(hours=11),
        pixels=[PixelStatusLine("111", "ok", "all checks passed"),
                PixelStatusLine("222", "critical", "server Purchase down", open_incidents=1)])


def _incident(**overrides: object) -> IncidentMessage:
    fields: dict = dict(
        pixel_id="1234567890", root_cause="missed_batch", title="Server Purchase events missing",
        severity="critical", status="new", summary="No server deliveries.", narrative="",
        evidence=["Purchase: 0 server events vs 410 expected"],
        proposals=[ProposalView("prop-1", "replay", "Replay 412 events", 412, 1, [("older than 7 days", 3)])])
    fields.update(overrides)
    return IncidentMessage(**fields)


def test_the_chart_is_a_png() -> None:
    png = _chart()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_a_summary_is_posted_with_its_chart_in_the_thread(fake: FakeSlackAPI,
                                                          notifier: SlackNotifier) -> None:
    png = _chart()
    posted = notifier.post_summary(CHANNEL, _summary(), chart_png=png)

    assert posted.channel == CHANNEL and posted.chart_uploaded
    [post] = fake.calls_to("chat.postMessage")
    assert post.token == TOKEN
    text = json.dumps(post.args["blocks"])
    assert text.index("`222`") < text.index("`111`"), "worst pixel first"
    [get_url] = fake.calls_to("files.getUploadURLExternal")
    assert int(get_url.args["length"]) == len(png)
    [upload] = fake.calls_to(UPLOAD_METHOD)
    assert upload.content == png
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == CHANNEL and complete.args["thread_ts"] == posted.ts


def test_an_incident_has_evidence_preview_and_buttons_carrying_the_proposal_id(
        fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    notifier.post_incident(CHANNEL, _incident())
    blocks = fake.calls_to("chat.postMessage")[0].args["blocks"]
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("approve_fix", "prop-1"), ("reject_fix", "prop-1")]
    text = json.dumps(blocks)
    assert "412 events in 1 request(s)" in text and "3 older than 7 days" in text
    assert "0 server events vs 410 expected" in text and ":red_circle:" in text


def test_a_resolved_incident_has_no_buttons() -> None:
    blocks = incident_blocks(_incident(status="resolved"))
    assert not [b for b in blocks if b["type"] == "actions"]
    assert blocks[0]["text"]["text"].startswith("Resolved")


def test_event_data_cannot_inject_mentions_or_links() -> None:
    hostile = "<!channel> <@U123> <https://evil.example|click> & co"
    proposal = ProposalView("p", "replay", hostile, 1, 1, [(hostile, 1)])
    incident = _incident(summary=hostile, evidence=[hostile], title=hostile, proposals=[proposal])
    blocks = incident_blocks(incident)
    mrkdwn = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    mrkdwn += [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    for text in mrkdwn:
        assert "<!channel>" not in text and "<@U123>" not in text and "<https://" not in text
    assert escape_mrkdwn(hostile) in "\n".join(mrkdwn)


def test_rate_limited_then_ok_is_retried(fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    fake.rate_limit("chat.postMessage", times=1, retry_after=0)
    posted = notifier.post_incident(CHANNEL, _incident())
    assert posted.ts
    assert len(fake.calls_to("chat.postMessage")) == 2


def test_a_server_error_is_retried(fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    fake.server_error("chat.postMessage", times=1)
    assert notifier.post_summary(CHANNEL, _summary()).ts
    assert len(fake.calls_to("chat.postMessage")) == 2


def test_a_hard_failure_raises_a_typed_error(fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    fake.fail("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackDeliveryError) as raised:
        notifier.post_incident(CHANNEL, _incident(), chart_png=_chart())
    assert raised.value.error == "channel_not_found" and not raised.value.retryable
    assert TOKEN not in str(raised.value)
    assert fake.calls_to("files.getUploadURLExternal") == []  # nothing half-posted


def test_rate_limits_that_do_not_clear_end_in_a_retryable_error(fake: FakeSlackAPI) -> None:
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    client = WebClient(token=TOKEN, base_url=fake.url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    fake.rate_limit("chat.postMessage", times=2, retry_after=0)
    with pytest.raises(SlackDeliveryError) as raised:
        SlackNotifier(client).post_summary(CHANNEL, _summary())
    assert raised.value.error == "ratelimited" and raised.value.retryable


def test_a_failed_chart_upload_keeps_the_posted_message(fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    fake.fail("files.completeUploadExternal", "invalid_channel")
    posted = notifier.post_incident(CHANNEL, _incident(), chart_png=_chart())
    assert posted.ts and not posted.chart_uploaded
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_update_decision_replaces_the_message(fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    posted = notifier.post_incident(CHANNEL, _incident())
    notifier.update_decision(posted.channel, posted.ts, [{"type": "section",
                                                         "text": {"type": "mrkdwn", "text": "done"}}], "done")
    [update] = fake.calls_to("chat.update")
    assert update.args["ts"] == posted.ts and update.args["text"] == "done"
    fake.fail("chat.update", "message_not_found")
    with pytest.raises(SlackDeliveryError):
        notifier.update_decision(posted.channel, "1.0", [], "x")


def test_the_manifest_asks_for_what_the_app_uses() -> None:
    from pathlib import Path

    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).parents[2] / "agent" / "slack" / "manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"chat:write", "files:write", "commands", "app_mentions:read", "channels:history"} <= scopes
    assert {"app_mention", "message.channels", "message.groups"} <= set(
        manifest["settings"]["event_subscriptions"]["bot_events"])
    urls = {manifest["settings"]["interactivity"]["request_url"],
            manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["features"]["slash_commands"][0]["url"]}
    assert urls == {"https://YOUR-HOST/slack/events"}
    assert manifest["settings"]["socket_mode_enabled"] is False


def test_missing_slack_settings_are_named_without_values() -> None:
    from agent.settings import Settings
    from agent.slack.app import SlackNotConfigured, build_slack_app
    from tests.fakes.slack_agent import FakeSlackAgent

    with pytest.raises(SlackNotConfigured, match="SLACK_BOT_TOKEN"):
        build_slack_app(settings=Settings(slack_bot_token=None, slack_signing_secret="s"),
                        service=FakeSlackAgent(), approvers=frozenset())
    with pytest.raises(SlackNotConfigured, match="SLACK_SIGNING_SECRET"):
        build_slack_app(settings=Settings(slack_bot_token="xoxb-1", slack_signing_secret=None,
                                          slack_app_token=None),
                        service=FakeSlackAgent(), approvers=frozenset())
