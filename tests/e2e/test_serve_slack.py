"""``capi-agent serve`` with Slack, end to end: scheduled audit -> outbox -> Slack message with chart ->
approval click -> fix against the Graph API simulator -> message updated; thread questions answered
by the chat graph; ``/capi`` commands; Slack failures; no raw PII and no token anywhere Slack or the
log can see. Real Bolt request handling (signed requests), real services, the fake Slack Web API and
the simulator on loopback, a real SQLite ledger per test."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from agent.slack.listeners.actions import NOT_AN_APPROVER_TEXT
from evals.harness import scenario_world
from tests.agentworld import (
    event_keys,
    only_proposal_id,
    proposal_of,
    received_events,
    small_scenario,
)
from tests.e2e.test_serve_world import (
    APPROVER,
    CHANNEL,
    PNG_SIGNATURE,
    SECRET,
    STRANGER,
    ServeWorld,
    message_of,
    serve_over,
)
from tests.fakes.slack_api import RESPONSE_URL_METHOD, UPLOAD_METHOD, FakeSlackAPI
from tests.fakes.slack_requests import bolt_request, command_body, event_body, message_event
from tools.diagnosis.catalogue import cause_info

MISSED_BATCH_TITLE = cause_info("missed_batch").title




def announce(serve: ServeWorld) -> tuple[str, dict]:
    """The first audit, delivered: returns the replay proposal id and the posted message."""
    state = serve.audit()
    proposal_id = only_proposal_id(state)
    report = serve.deliver()
    assert (report.sent, report.retry_later, report.failed) == (1, 0, 0)
    [post] = serve.fake.calls_to("chat.postMessage")
    [row] = serve.outbox()
    assert row.message_ts is not None
    return proposal_id, message_of(post, row.message_ts)


def buttons(message: dict) -> list[dict]:
    return [element for block in message["blocks"] if block["type"] == "actions"
            for element in block["elements"]]


# --- 1. audit -> outbox -> Slack ------------------------------------------------------------------

def test_an_audit_posts_the_incident_with_buttons_and_a_chart_then_stays_silent_then_resolves(
        serve: ServeWorld) -> None:
    proposal_id, message = announce(serve)

    text = json.dumps(message["blocks"])
    assert f"New incident: {MISSED_BATCH_TITLE}" in text
    assert "root cause `missed_batch`" in text
    assert [(b["action_id"], b["value"]) for b in buttons(message)] == [
        ("approve_fix", proposal_id), ("reject_fix", proposal_id)]
    [row] = serve.outbox()
    assert (row.status, row.channel, row.pixel_id, row.kind) == ("sent", CHANNEL, serve.pixel.id, "incident")
    # The chart went into the incident's thread, as a real PNG.
    [complete] = serve.fake.calls_to("files.completeUploadExternal")
    assert (complete.args["channel_id"], complete.args["thread_ts"]) == (CHANNEL, row.message_ts)
    [upload] = serve.fake.calls_to(UPLOAD_METHOD)
    assert upload.content.startswith(PNG_SIGNATURE) and len(upload.content) > 1000

    # The same hour again: the incident is ongoing, nothing new to say.
    serve.fake.reset()
    serve.audit()
    assert serve.deliver().sent == 0
    assert serve.fake.calls_to("chat.postMessage") == [] and len(serve.outbox()) == 1

    # The batch is replayed (approved outside Slack here); the next audit finds the incident gone.
    serve.services.resolve_fix(proposal_id, action="approve", by="cli:ops")
    serve.clock.now += timedelta(minutes=20)
    state = serve.audit()
    assert ("resolved", "missed_batch") in [(t["status"], t["incident"]["root_cause"]) for t in state["triaged"]]
    serve.deliver()
    resolved = [c for c in serve.fake.calls_to("chat.postMessage")
                if f"Resolved: {MISSED_BATCH_TITLE}" in json.dumps(c.args["blocks"])]
    assert len(resolved) == 1
    assert not [b for b in resolved[0].args["blocks"] if b["type"] == "actions"], "no buttons when resolved"


# --- 2. approvals through Slack -------------------------------------------------------------------

def test_an_approvers_click_runs_the_replay_and_updates_the_message_with_who_and_the_result(
        serve: ServeWorld) -> None:
    proposal_id, message = announce(serve)
    total = proposal_of(serve.world, proposal_id).preview.total_events
    assert received_events(serve.world) == []

    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200

    keys = event_keys(received_events(serve.world))
    assert len(keys) == len(set(keys)) == total
    assert proposal_of(serve.world, proposal_id).status == "executed"
    [update] = serve.fake.calls_to("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (CHANNEL, message["ts"])
    blocks = update.args["blocks"]
    assert not [b for b in blocks if b["type"] == "actions"], "the buttons are replaced by the decision"
    text = json.dumps(blocks)
    assert f"Approved by <@{APPROVER}>" in text
    assert f"sent {total}, Meta received {total}" in text
    assert "verification:" in text and "resolved" in text

    # A second click (double click, or another approver): already decided, nothing sent again.
    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200
    assert len(received_events(serve.world)) == total
    assert len(serve.fake.calls_to("chat.update")) == 1
    [note] = serve.fake.calls_to("chat.postEphemeral")
    assert note.args["user"] == APPROVER and "already decided" in note.args["text"]
    assert f"<@{APPROVER}>" in note.args["text"] and "slack:" not in note.args["text"]


def test_a_non_approver_click_gets_a_private_note_and_runs_nothing(serve: ServeWorld) -> None:
    proposal_id, message = announce(serve)

    assert serve.click(user=STRANGER, proposal_id=proposal_id, message=message) == 200

    [note] = serve.fake.calls_to("chat.postEphemeral")
    assert (note.args["user"], note.args["text"]) == (STRANGER, NOT_AN_APPROVER_TEXT)
    assert serve.fake.calls_to("chat.update") == []
    assert received_events(serve.world) == []
    assert proposal_of(serve.world, proposal_id).status == "proposed"


def test_a_click_after_the_proposal_expired_runs_nothing(serve: ServeWorld) -> None:
    proposal_id, message = announce(serve)
    serve.clock.now = proposal_of(serve.world, proposal_id).expires_at + timedelta(minutes=1)

    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200

    [note] = serve.fake.calls_to("chat.postEphemeral")
    assert note.args["user"] == APPROVER and "expired" in note.args["text"]
    assert serve.fake.calls_to("chat.update") == []
    assert received_events(serve.world) == []
    assert proposal_of(serve.world, proposal_id).status == "expired"


def test_a_reject_click_sends_nothing_and_says_who_rejected(serve: ServeWorld) -> None:
    proposal_id, message = announce(serve)

    serve.click(user=APPROVER, proposal_id=proposal_id, message=message, action_id="reject_fix")

    assert received_events(serve.world) == []
    assert proposal_of(serve.world, proposal_id).status == "rejected"
    [update] = serve.fake.calls_to("chat.update")
    assert f"Rejected by <@{APPROVER}>" in json.dumps(update.args["blocks"])


# --- 3. questions in the incident's thread --------------------------------------------------------

def ask(serve: ServeWorld, *, thread_ts: str, ts: str, text: str, retry_num: int | None = None,
        event_id: str | None = None) -> int:
    event = message_event(channel=CHANNEL, user=APPROVER, text=text, ts=ts, thread_ts=thread_ts)
    body = event_body(event, event_id=event_id)
    return serve.app.dispatch(bolt_request(body, SECRET, retry_num=retry_num)).status


def test_a_question_in_the_incident_thread_is_answered_there_from_the_pixels_audit(serve: ServeWorld) -> None:
    _, message = announce(serve)
    posts_before = len(serve.fake.calls_to("chat.postMessage"))

    assert ask(serve, thread_ts=message["ts"], ts="1763640000.000100", text="Why did this break?") == 200

    [reply] = serve.fake.calls_to("chat.postMessage")[posts_before:]
    assert (reply.args["channel"], reply.args["thread_ts"]) == (CHANNEL, message["ts"])
    assert MISSED_BATCH_TITLE in reply.args["text"]  # the offline reasoner read the pixel's incident


def test_a_slack_retry_of_a_question_is_not_answered_twice(serve: ServeWorld) -> None:
    _, message = announce(serve)
    posts_before = len(serve.fake.calls_to("chat.postMessage"))

    ask(serve, thread_ts=message["ts"], ts="1763640000.000200", text="What broke?", event_id="Ev0RETRY1")
    assert ask(serve, thread_ts=message["ts"], ts="1763640000.000200", text="What broke?",
               event_id="Ev0RETRY1", retry_num=1) == 200

    assert len(serve.fake.calls_to("chat.postMessage")[posts_before:]) == 1


def test_a_reply_in_a_thread_capi_agent_did_not_start_is_left_alone(serve: ServeWorld) -> None:
    announce(serve)
    posts_before = len(serve.fake.calls_to("chat.postMessage"))

    ask(serve, thread_ts="1700000000.000001", ts="1763640000.000300", text="lunch anyone?")

    assert serve.fake.calls_to("chat.postMessage")[posts_before:] == []


# --- 4. slash commands ----------------------------------------------------------------------------

def command(serve: ServeWorld, text: str) -> str:
    body = command_body(text=text, user=APPROVER, channel=CHANNEL, response_url=serve.fake.response_url(text))
    assert serve.app.dispatch(bolt_request(body, SECRET, form=True)).status == 200
    [answer] = [c for c in serve.fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == text]
    return str(answer.args["text"])


def test_capi_status_fixes_and_audit_answer_from_the_ledger(serve: ServeWorld) -> None:
    proposal_id, _ = announce(serve)

    status = command(serve, "status")
    assert f"pixel {serve.pixel.id}: critical" in status and "1 open incident(s)" in status
    assert "missed_batch" in status
    fixes = command(serve, "fixes")
    assert proposal_id in fixes and "replay" in fixes

    audit = command(serve, "audit")
    assert "missed_batch" in audit
    [hook] = [c for c in serve.fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == "audit"]
    assert hook.args["response_type"] == "in_channel"
    assert received_events(serve.world) == [], "an audit proposes, it never executes"


# --- 5. Slack failures ----------------------------------------------------------------------------

def test_transient_slack_failures_keep_the_message_pending_until_a_later_round_posts_it_once(
        serve: ServeWorld) -> None:
    serve.audit()
    serve.fake.server_error("chat.postMessage", times=3)  # the first try and both client retries

    report = serve.deliver()
    assert (report.sent, report.retry_later, report.failed) == (0, 1, 0)
    [row] = serve.outbox()
    assert (row.status, row.attempts, row.message_ts) == ("pending", 1, None)
    assert serve.accepted_posts() == []

    serve.fake.fail("chat.postMessage", "ratelimited")  # Slack's ok:false form
    assert serve.deliver().retry_later == 1
    assert serve.deliver().sent == 1
    assert serve.deliver().sent == 0

    [row] = serve.outbox()
    assert (row.status, row.attempts) == ("sent", 2)
    [posted] = serve.accepted_posts()
    assert row.message_ts is not None and posted["channel"] == CHANNEL


def test_a_rate_limited_post_is_retried_by_the_client_and_posted_once(serve: ServeWorld) -> None:
    serve.audit()
    serve.fake.rate_limit("chat.postMessage", times=1, retry_after=0)

    assert serve.deliver().sent == 1
    assert len(serve.accepted_posts()) == 1
    assert len(serve.fake.calls_to("chat.postMessage")) == 2


def test_a_non_retryable_slack_error_marks_the_message_failed_and_it_is_not_tried_again(
        serve: ServeWorld) -> None:
    serve.audit()
    serve.fake.fail("chat.postMessage", "channel_not_found")

    report = serve.deliver()
    assert (report.sent, report.retry_later, report.failed) == (0, 0, 1)
    [row] = serve.outbox()
    assert (row.status, row.last_error) == ("failed", "chat.postMessage: channel_not_found")

    assert serve.deliver().sent == 0
    assert len(serve.fake.calls_to("chat.postMessage")) == 1 and serve.accepted_posts() == []


# --- Postgres -------------------------------------------------------------------------------------

@pytest.mark.postgres
def test_on_postgres_an_announced_incident_is_approved_from_slack_once(
        postgres_url: str, tmp_path: Path, fake: FakeSlackAPI) -> None:
    with scenario_world(small_scenario(), tmp_path, database_url=postgres_url) as world, \
            serve_over(world, fake) as serve:
        proposal_id, message = announce(serve)
        serve.audit()  # the same hour again: silent
        assert serve.deliver().sent == 0

        serve.click(user=APPROVER, proposal_id=proposal_id, message=message)
        serve.click(user=APPROVER, proposal_id=proposal_id, message=message)

        total = proposal_of(world, proposal_id).preview.total_events
        keys = event_keys(received_events(world))
        assert len(keys) == len(set(keys)) == total
        [update] = serve.fake.calls_to("chat.update")
        assert f"Approved by <@{APPROVER}>" in json.dumps(update.args["blocks"])
        assert len(serve.outbox()) == 1
