"""``/capi release PROPOSAL``: an approver releases a fix's uncertain events (a request whose answer was
never recorded) after checking Events Manager; the release is in the fix trail under their Slack id
and the events go out through the proposal's fix run. Anyone else gets a private note and nothing
changes. Real Bolt handling, the fake Slack Web API and the Graph API simulator on loopback."""

from __future__ import annotations

import json

from agent.slack.listeners.commands import NOT_AN_APPROVER_RELEASE_TEXT
from evals.harness import SIM_TOKEN
from tests.agentworld import proposal_of, received_events, trail_of
from tests.e2e.test_serve_slack import announce
from tests.e2e.test_serve_world import APPROVER, CHANNEL, SECRET, STRANGER, ServeWorld
from tests.fakes.slack_api import RESPONSE_URL_METHOD
from tests.fakes.slack_requests import bolt_request, command_body
from tools.meta.client import GraphClient
from tools.meta.simulator import Fault


def slash(serve: ServeWorld, text: str, *, user: str, hook: str) -> tuple[str, dict]:
    """``/capi text`` from ``user``: (the ack's body, the answer posted to the response_url)."""
    body = command_body(text=text, user=user, channel=CHANNEL, response_url=serve.fake.response_url(hook))
    response = serve.app.dispatch(bolt_request(body, SECRET, form=True))
    assert response.status == 200
    answers = [c.args for c in serve.fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == hook]
    return response.body, (answers[0] if answers else {})


def uncertain_after_approval(serve: ServeWorld) -> tuple[str, int]:
    """The announced replay, approved in Slack while Meta never answers: its events are uncertain."""
    proposal_id, message = announce(serve)
    total = proposal_of(serve.world, proposal_id).preview.total_events
    sim = serve.world.simulator
    sim.state.add_fault(Fault(mode="timeout", endpoint="events", delay_seconds=1.0))
    serve.services.client_factory = lambda _pixel: GraphClient(
        base_url=sim.url, access_token=SIM_TOKEN, timeout=0.3, max_retries=0, sleep=lambda _s: None)
    assert serve.click(user=APPROVER, proposal_id=proposal_id, message=message) == 200
    proposal = proposal_of(serve.world, proposal_id)
    assert proposal.result is not None and proposal.result.uncertain == total > 0
    assert received_events(serve.world) == []
    [update] = serve.fake.calls_to("chat.update")  # the approver learns what to do next
    assert f"/capi release {proposal_id}" in json.dumps(update.args["blocks"])
    serve.services.client_factory = lambda _pixel: serve.world.client()  # Meta answers again
    return proposal_id, total


def test_an_approver_releases_uncertain_events_and_they_are_resent_once(serve: ServeWorld) -> None:
    proposal_id, total = uncertain_after_approval(serve)

    _ack, answer = slash(serve, f"release {proposal_id}", user=APPROVER, hook="release")

    assert answer["response_type"] == "in_channel"
    assert f"Released 1 uncertain chunk(s) of {proposal_id}" in answer["text"]
    assert f"sent {total}, Meta received {total}" in answer["text"]
    assert len(received_events(serve.world)) == total
    proposal = proposal_of(serve.world, proposal_id)
    assert proposal.status == "executed" and proposal.result is not None
    assert (proposal.result.sent, proposal.result.uncertain) == (total, 0)
    entries = [(e.action, e.actor) for e in trail_of(serve.world, proposal_id)]
    assert ("uncertain_released", f"slack:{APPROVER}") in entries

    # A second release has nothing left to release: nothing is sent again.
    _ack, again = slash(serve, f"release {proposal_id}", user=APPROVER, hook="again")
    assert "no uncertain events" in again["text"]
    assert len(received_events(serve.world)) == total


def test_a_non_approver_cannot_release(serve: ServeWorld) -> None:
    proposal_id, _total = uncertain_after_approval(serve)

    _ack, answer = slash(serve, f"release {proposal_id}", user=STRANGER, hook="stranger")

    assert (answer["response_type"], answer["text"]) == ("ephemeral", NOT_AN_APPROVER_RELEASE_TEXT)
    assert received_events(serve.world) == []
    assert "uncertain_released" not in [e.action for e in trail_of(serve.world, proposal_id)]
    assert proposal_of(serve.world, proposal_id).result.uncertain > 0  # type: ignore[union-attr]


def test_release_without_a_proposal_shows_its_usage_and_help_lists_it(serve: ServeWorld) -> None:
    ack, answer = slash(serve, "release", user=APPROVER, hook="bare")
    assert "/capi release PROPOSAL" in ack and answer == {}
    help_ack, _ = slash(serve, "help", user=APPROVER, hook="help")
    assert "/capi release PROPOSAL" in help_ack
