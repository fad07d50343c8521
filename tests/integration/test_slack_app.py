"""The Bolt app driven with signed requests against the fake Slack Web API (lazy work run inline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from slack_bolt import App

from agent.settings import Settings
from agent.slack.app import build_slack_app
from agent.slack.blocks import IncidentMessage, ProposalView
from agent.slack.listeners.errors import SAFE_ERROR_TEXT
from agent.slack.notifier import PostedMessage, SlackNotifier
from agent.slack.port import DecisionOutcome
from tests.fakes.slack_agent import FakeSlackAgent, InlineExecutor
from tests.fakes.slack_api import BOT_USER_ID, RESPONSE_URL_METHOD, FakeSlackAPI
from tests.fakes.slack_requests import (
    action_body,
    bolt_request,
    command_body,
    event_body,
    message_event,
)
from tests.fixtures.slack import SLACK_TEST_TOKEN

SECRET = "test-signing-secret"
TOKEN = SLACK_TEST_TOKEN
CHANNEL = "C0ALERTS"
APPROVER = "UAPPROVER"
STRANGER = "USTRANGER"


@pytest.fixture()
def service() -> FakeSlackAgent:
    return FakeSlackAgent()


@pytest.fixture()
def app(fake: FakeSlackAPI, service: FakeSlackAgent) -> App:
    settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url)
    return build_slack_app(settings=settings, service=service, approvers=frozenset({APPROVER}),
                           listener_executor=InlineExecutor())


def _incident() -> IncidentMessage:
    return IncidentMessage(
        pixel_id="1234567890", root_cause="missed_batch", title="Server Purchase events missing",
        severity="critical", status="new", summary="No server Purchase deliveries 10:00-12:00 UTC.",
        narrative="Browser counts are steady; the nightly batch did not run.",
        evidence=["server Purchase 0 vs baseline 410"],
        proposals=[ProposalView(id="prop-1", kind="replay", summary="Replay 412 undelivered Purchase events",
                                total_events=412, requests=1, skipped=[("older than 7 days", 3)])],
    )


def _posted_incident(fake: FakeSlackAPI) -> tuple[PostedMessage, dict]:
    from agent.slack.client import build_web_client

    notifier = SlackNotifier(build_web_client(token=TOKEN, base_url=fake.url))
    posted = notifier.post_incident(CHANNEL, _incident())
    call = fake.calls_to("chat.postMessage")[-1]
    return posted, {"ts": posted.ts, "text": call.args["text"], "blocks": call.args["blocks"]}


def _click(app: App, fake: FakeSlackAPI, *, user: str, action_id: str = "approve_fix",
           message: dict | None = None) -> int:
    if message is None:
        message = _posted_incident(fake)[1]
    body = action_body(action_id=action_id, value="prop-1", user=user, channel=CHANNEL, message=message)
    return app.dispatch(bolt_request(body, SECRET, form=True)).status


def _all_text(fake: FakeSlackAPI) -> str:
    return "\n".join(call.text_blob() for call in fake.calls)


def _approved(at: datetime, status: str = "approved_executed",
              result: str = "412 events replayed, 0 failed") -> DecisionOutcome:
    return DecisionOutcome(status=status, message="done", proposal_id="prop-1", decided_by=APPROVER,  # type: ignore[arg-type]
                           decided_at=at, result_summary=result)


def test_approval_by_an_approver_updates_the_message_with_who_when_and_result(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.outcomes.append(_approved(datetime(2026, 11, 20, 12, 5, tzinfo=UTC)))
    posted, message = _posted_incident(fake)

    assert _click(app, fake, user=APPROVER, message=message) == 200

    assert service.calls_to("decide") == [
        {"proposal_id": "prop-1", "user_id": APPROVER, "decision": "approve"}]
    [update] = fake.calls_to("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (CHANNEL, posted.ts)
    blocks = update.args["blocks"]
    assert not [b for b in blocks if b["type"] == "actions"], "buttons must be gone"
    text = json.dumps(blocks)
    assert f"Approved by <@{APPROVER}> at 12:05 UTC" in text
    assert "412 events replayed, 0 failed" in text
    assert "Server Purchase events missing" in text  # the rest of the message is kept


def test_reject_is_shown_as_rejected_by(app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    service.outcomes.append(DecisionOutcome(status="rejected", message="rejected", proposal_id="prop-1",
                                            decided_by=APPROVER, decided_at=at))
    _click(app, fake, user=APPROVER, action_id="reject_fix")
    assert service.calls_to("decide")[0]["decision"] == "reject"
    blocks = fake.calls_to("chat.update")[0].args["blocks"]
    assert f"Rejected by <@{APPROVER}> at 09:00 UTC" in json.dumps(blocks)


def test_a_non_approver_gets_a_private_note_and_nothing_is_decided(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    _click(app, fake, user=STRANGER)

    assert service.calls_to("decide") == []
    assert fake.calls_to("chat.update") == []
    [note] = fake.calls_to("chat.postEphemeral")
    assert note.args["user"] == STRANGER and note.args["channel"] == CHANNEL
    assert "Only approvers" in note.args["text"]


def test_a_double_click_runs_once_and_the_second_click_only_gets_a_note(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    decided_at = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    service.outcomes.extend([
        _approved(decided_at),
        DecisionOutcome(status="already_decided", message="Already approved.", proposal_id="prop-1",
                        decided_by=APPROVER, decided_at=decided_at),
    ])
    _, message = _posted_incident(fake)
    _click(app, fake, user=APPROVER, message=message)
    _click(app, fake, user=APPROVER, message=message)

    assert len(service.calls_to("decide")) == 2  # the service answers the second with already_decided
    assert len(fake.calls_to("chat.update")) == 1  # the first result is the only one shown
    [note] = fake.calls_to("chat.postEphemeral")
    assert "already decided" in note.args["text"] and "12:05 UTC" in note.args["text"]
    assert "412 events replayed" not in note.args["text"]


@pytest.mark.parametrize(("status", "phrase"), [("expired", "expired"), ("not_found", "could not find")])
def test_an_expired_or_unknown_proposal_leaves_the_message_alone(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent, status: str, phrase: str) -> None:
    service.outcomes.append(DecisionOutcome(status=status, message="Proposals expire after 24 hours.",  # type: ignore[arg-type]
                                            proposal_id="prop-1"))
    _click(app, fake, user=APPROVER)
    assert fake.calls_to("chat.update") == []
    [note] = fake.calls_to("chat.postEphemeral")
    assert phrase in note.args["text"] and note.args["user"] == APPROVER


def test_a_failed_fix_is_shown_as_failed(app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.outcomes.append(_approved(datetime(2026, 11, 20, 12, 5, tzinfo=UTC), status="approved_failed",
                                      result="Meta rejected the batch (code 100)"))
    _click(app, fake, user=APPROVER)
    text = json.dumps(fake.calls_to("chat.update")[0].args["blocks"])
    assert ":x: Approved by" in text and "Meta rejected the batch (code 100)" in text


def test_a_question_in_an_incident_thread_is_answered_in_the_thread(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.incident_threads[(CHANNEL, "1700000000.000100")] = "1234567890"
    event = message_event(channel=CHANNEL, user="UASKER", text="why did it stop?", ts="1700000050.000200",
                          thread_ts="1700000000.000100")
    assert app.dispatch(bolt_request(event_body(event), SECRET)).status == 200

    assert service.calls_to("answer") == [{"conversation_id": f"{CHANNEL}:1700000000.000100",
                                           "question": "why did it stop?", "user_id": "UASKER",
                                           "pixel_id": "1234567890"}]
    [reply] = fake.calls_to("chat.postMessage")
    assert reply.args["thread_ts"] == "1700000000.000100"
    assert reply.args["text"] == service.answer_text


def test_messages_outside_incident_threads_bots_and_subtypes_are_ignored(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.incident_threads[(CHANNEL, "1700000000.000100")] = "1234567890"
    events = [
        message_event(channel=CHANNEL, user="U1", text="lunch?", ts="1700000060.1", thread_ts="1699.1"),
        message_event(channel=CHANNEL, user="U1", text="top level", ts="1700000061.1"),
        message_event(channel=CHANNEL, user="U2", text="from a bot", ts="1700000062.1",
                      thread_ts="1700000000.000100", bot_id="BOTHER"),
        message_event(channel=CHANNEL, user="U1", text="edited", ts="1700000063.1",
                      thread_ts="1700000000.000100", subtype="message_changed"),
    ]
    for event in events:
        app.dispatch(bolt_request(event_body(event), SECRET))
    assert service.calls_to("answer") == []
    assert fake.calls_to("chat.postMessage") == []


def test_an_app_mention_is_answered_once_even_when_it_also_arrives_as_a_message(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.incident_threads[(CHANNEL, "1700000000.000100")] = "1234567890"
    text = f"<@{BOT_USER_ID}> is EMQ back to normal?"
    common = {"channel": CHANNEL, "user": "UASKER", "text": text, "ts": "1700000070.000300",
              "thread_ts": "1700000000.000100"}
    app.dispatch(bolt_request(event_body(message_event(kind="app_mention", **common)), SECRET))
    app.dispatch(bolt_request(event_body(message_event(**common)), SECRET))

    [asked] = service.calls_to("answer")
    assert asked["question"] == "is EMQ back to normal?" and asked["pixel_id"] == "1234567890"
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_a_top_level_mention_is_answered_in_a_new_thread(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    event = message_event(kind="app_mention", channel=CHANNEL, user="UASKER",
                          text=f"<@{BOT_USER_ID}> how are my pixels?", ts="1700000080.000400")
    app.dispatch(bolt_request(event_body(event), SECRET))
    [asked] = service.calls_to("answer")
    assert asked["conversation_id"] == f"{CHANNEL}:1700000080.000400" and asked["pixel_id"] is None
    assert fake.calls_to("chat.postMessage")[0].args["thread_ts"] == "1700000080.000400"


def test_a_retried_event_is_acknowledged_and_not_handled_again(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    event = message_event(kind="app_mention", channel=CHANNEL, user="UASKER",
                          text=f"<@{BOT_USER_ID}> status?", ts="1700000090.000500")
    body = event_body(event, event_id="Ev0RETRY")
    first = app.dispatch(bolt_request(body, SECRET))
    retry = app.dispatch(bolt_request(body, SECRET, retry_num=1))

    assert first.status == 200 and retry.status == 200
    assert retry.headers.get("x-slack-no-retry") == ["1"]
    assert len(service.calls_to("answer")) == 1
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_an_answer_cannot_ping_the_channel(app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.answer_text = "The event <!channel> came from <https://evil.example|your shop>"
    event = message_event(kind="app_mention", channel=CHANNEL, user="UASKER", text="hi", ts="1700000095.1")
    app.dispatch(bolt_request(event_body(event), SECRET))
    text = fake.calls_to("chat.postMessage")[0].args["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "<https://" not in text


@pytest.mark.parametrize(("text", "method", "kwargs", "response_type"), [
    ("status", "status_text", {"pixel_id": None}, "ephemeral"),
    ("status 1234567890", "status_text", {"pixel_id": "1234567890"}, "ephemeral"),
    ("fixes", "fixes_text", {}, "ephemeral"),
    ("audit 1234567890", "run_audit_text", {"pixel_id": "1234567890"}, "in_channel"),
])
def test_slash_commands_call_the_service_and_respond(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent, text: str, method: str,
        kwargs: dict, response_type: str) -> None:
    body = command_body(text=text, user="UASKER", channel=CHANNEL, response_url=fake.response_url())
    response = app.dispatch(bolt_request(body, SECRET, form=True))

    assert response.status == 200
    assert service.calls_to(method) == [kwargs]
    [reply] = fake.calls_to(RESPONSE_URL_METHOD)
    assert reply.args["response_type"] == response_type
    assert reply.args["text"]


@pytest.mark.parametrize("text", ["help", "", "frobnicate now"])
def test_help_and_unknown_subcommands_show_help_without_calling_the_service(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent, text: str) -> None:
    body = command_body(text=text, user="UASKER", channel=CHANNEL, response_url=fake.response_url())
    response = app.dispatch(bolt_request(body, SECRET, form=True))
    assert response.status == 200
    assert "/capi status" in response.body  # a plain-text ack is shown only to the caller
    assert service.calls == []


SECRET_DETAIL = "password=hunter2 host=db.internal"


@pytest.mark.parametrize("where", ["answer", "decide", "status_text"])
def test_a_service_exception_gives_a_safe_message_and_leaks_nothing(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent, where: str) -> None:
    service.errors[where] = RuntimeError(SECRET_DETAIL)
    if where == "answer":
        event = message_event(kind="app_mention", channel=CHANNEL, user="UASKER", text="hi",
                              ts="1700000099.1")
        app.dispatch(bolt_request(event_body(event), SECRET))
        reply = fake.calls_to("chat.postMessage")[-1]
        assert reply.args["thread_ts"] == "1700000099.1"
    elif where == "decide":
        _click(app, fake, user=APPROVER)
        reply = fake.calls_to("chat.postEphemeral")[-1]
    else:
        body = command_body(text="status", user="UASKER", channel=CHANNEL, response_url=fake.response_url())
        app.dispatch(bolt_request(body, SECRET, form=True))
        reply = fake.calls_to(RESPONSE_URL_METHOD)[-1]
    assert reply.args["text"] == SAFE_ERROR_TEXT
    assert "hunter2" not in _all_text(fake)
    assert "RuntimeError" not in _all_text(fake)


def test_a_bad_signature_is_refused_with_401(app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    event = message_event(kind="app_mention", channel=CHANNEL, user="UASKER", text="hi", ts="1700000100.1")
    forged = app.dispatch(bolt_request(event_body(event), "not-the-secret"))
    stale = app.dispatch(bolt_request(event_body(event), SECRET, timestamp=1_000_000_000))
    assert forged.status == 401 and stale.status == 401
    assert service.calls == [] and fake.calls_to("chat.postMessage") == []


def _weekly_view() -> object:
    from agent.slack.port import WeeklyView
    from agent.summary.weekly import PixelWeek, WeeklyReport

    pixel = PixelWeek(pixel_id="1100000005", name="Main shop", days=[], server=0, browser=0, ratio=None,
                      coverage=None, previous_coverage=None, emq=None, hours_audited=0, hours_with_incidents=0,
                      hours_failed=0)
    report = WeeklyReport(week_start="2026-11-23T09:00:00Z", week_end="2026-11-30T09:00:00Z", timezone="UTC",
                          pixels=[pixel])
    return WeeklyView(report=report, links={})


def test_capi_weekly_posts_the_report_and_says_so_when_the_picture_cannot_be_uploaded(
        app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    service.weekly = _weekly_view()
    fake.fail("files.getUploadURLExternal", "not_in_channel")
    body = command_body(text="weekly", user="UASKER", channel=CHANNEL, response_url=fake.response_url())
    assert app.dispatch(bolt_request(body, SECRET, form=True)).status == 200
    assert service.calls_to("weekly_report") == [{"pixel_id": None, "channel": CHANNEL}]
    report, note = fake.calls_to(RESPONSE_URL_METHOD)
    assert report.args["response_type"] == "in_channel" and "`1100000005`" in json.dumps(report.args["blocks"])
    assert note.args["response_type"] == "ephemeral" and "invite the bot" in note.args["text"]


def test_capi_weekly_without_pixels_says_so(app: App, fake: FakeSlackAPI, service: FakeSlackAgent) -> None:
    body = command_body(text="weekly 42", user="UASKER", channel=CHANNEL, response_url=fake.response_url())
    assert app.dispatch(bolt_request(body, SECRET, form=True)).status == 200
    assert service.calls_to("weekly_report") == [{"pixel_id": "42", "channel": CHANNEL}]
    [reply] = fake.calls_to(RESPONSE_URL_METHOD)
    assert reply.args["response_type"] == "ephemeral" and "No pixels configured" in reply.args["text"]
