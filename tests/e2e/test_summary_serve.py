"""Hourly summaries through ``capi-agent serve``'s loops, end to end: two channels, five pixels, the real
scheduler, audit graph, outbox and notifier against the fake Slack Web API over loopback.

One summary per channel and hour (also with two replicas on Postgres), replies in a thread under one
parent message per day that is edited to show the latest hour, incident messages still top-level, a
Slack outage delivering late summaries in order, and every audit path (scheduler, ``capi-agent
audit``, ``/capi audit``) queueing the hour's summary."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from agent.cli import build_app
from agent.server import build_server_app
from agent.slack.app import build_slack_app
from evals.harness import scenario_world
from tests.agentworld import WorldTemplate, agent_world, database_url, small_scenario
from tests.e2e.test_serve_world import APPROVER, BOT_TOKEN, CANARY_EMAIL, SECRET, slack_settings
from tests.e2e.test_summary_world import (
    BROKEN,
    CHANNEL_A,
    CHANNEL_B,
    CLONE,
    EMPTY_1,
    Shop,
    blocks_text,
    configure,
    day_parents,
    header,
    hour_before,
    incident_posts,
    serve_shop,
    shop_pixels,
    summary_replies,
)
from tests.fakes.slack_agent import InlineExecutor
from tests.fakes.slack_api import RESPONSE_URL_METHOD, FakeSlackAPI
from tests.fakes.slack_requests import bolt_request, command_body
from tests.integration.test_email_delivery import CANARY_PHONE, Mailbox, canary_lines, free_port, mailer
from tools.diagnosis.catalogue import cause_info
from tools.loopback import ThreadedServer

MISSED_BATCH = cause_info("missed_batch").title




@pytest.fixture
def shop(template: WorldTemplate, tmp_path: Path, fake: FakeSlackAPI,
         caplog: pytest.LogCaptureFixture) -> Iterator[Shop]:
    caplog.set_level(logging.DEBUG)
    scenario = template.scenario
    canaries = canary_lines(scenario.audit_at, scenario.pixel_id)  # raw email and phone, hashed at ingest
    with agent_world(template, tmp_path, extra_events=canaries) as world:
        configure(world, shop_pixels(world))
        with serve_shop(world, fake) as built:
            yield built
    # Whatever the test did: no customer information and no token in anything Slack or the log saw.
    seen = json.dumps([call.args for call in fake.calls], ensure_ascii=False)
    for secret in (CANARY_EMAIL, CANARY_PHONE, "6505550199", BOT_TOKEN):
        assert secret not in seen and secret not in caplog.text


def test_each_channel_gets_one_summary_per_hour_threaded_under_a_daily_parent_edited_in_place(
        shop: Shop) -> None:
    audit_at = shop.world.scenario.audit_at
    day_before = hour_before(audit_at, days=1)

    shop.round(day_before)  # the hour ending 19:00 the day before: nothing wrong at the shop
    report = shop.deliver()
    assert (report.retry_later, report.failed) == (0, 0)
    for channel in (CHANNEL_A, CHANNEL_B):
        [parent] = day_parents(shop.fake, channel)
        [reply] = summary_replies(shop.fake, channel)
        assert reply["thread_ts"] == parent["ts"]
    a = blocks_text(summary_replies(shop.fake, CHANNEL_A)[0])
    assert "*healthy* · `1100000005`" in a and "*warning* · `9000000001`" in a
    assert "server 115 (no usual level yet) · browser 115 (no usual level yet) · EMQ 7.5" in a  # day 2 of data
    assert a.index("*warning*") < a.index("*healthy*")  # the worse pixel first
    b = blocks_text(summary_replies(shop.fake, CHANNEL_B)[0])
    assert f"*audit failed* · `{BROKEN}`" in b and f"*not judged* · `{EMPTY_1}`" in b
    assert "1100000005" not in b and EMPTY_1 not in a  # each channel hears about its own pixels
    assert shop.fake.calls_to("chat.update") == []  # the parent already shows the first hour

    # The next hour: one more reply per channel, and the parent now shows that hour.
    shop.round(day_before + timedelta(hours=1))
    shop.round(day_before + timedelta(hours=1))  # a second round in the same hour adds nothing
    shop.deliver()
    for channel in (CHANNEL_A, CHANNEL_B):
        assert len(day_parents(shop.fake, channel)) == 1
        replies = summary_replies(shop.fake, channel)
        assert len(replies) == 2
        assert "19:00 → 20:00 UTC" in blocks_text(replies[1])
        [parent] = day_parents(shop.fake, channel)
        assert "*Latest hour*" in blocks_text(parent) and "2026-11-11 19:00 → 20:00 UTC" in blocks_text(parent)
    updates = shop.fake.calls_to("chat.update")
    assert sorted(call.args["channel"] for call in updates) == sorted([CHANNEL_A, CHANNEL_B])

    # The audit day (catch-up of the last two hours): a new day's parent, the missed batch opens an
    # incident, announced top-level, and the summary links to its message.
    shop.round(hour_before(audit_at))
    assert shop.deliver().failed == 0
    incidents = incident_posts(shop.fake, CHANNEL_A)
    assert incidents and all("thread_ts" not in m for m in incidents)  # incidents stay top-level
    missed = [m for m in incidents if MISSED_BATCH in header(m)]  # the shop and its clone
    [incident] = [m for m in missed if "pixel `1100000005`" in blocks_text(m)]
    parents = day_parents(shop.fake, CHANNEL_A)
    assert len(parents) == 2
    replies = summary_replies(shop.fake, CHANNEL_A)
    assert len(replies) == 4 and all(r["thread_ts"] == parents[1]["ts"] for r in replies[2:])
    last = blocks_text(replies[-1])
    link = f"https://slack.com/archives/{CHANNEL_A}/p{incident['ts'].replace('.', '')}"
    assert f"<{link}|{MISSED_BATCH} (critical)>" in last
    assert "Waiting for approval: `replay`" in last
    assert "(usual " in last  # a day of history: the same hour yesterday is the usual level
    # Exactly one summary per channel and hour in the outbox, whatever ran how often.
    keys = [row.dedupe_key for row in shop.outbox("summary")]
    assert len(keys) == len(set(keys)) == 8
    assert {row.status for row in shop.outbox()} == {"sent"}


def test_a_slack_outage_delays_the_summaries_which_then_arrive_in_order_marked_late(shop: Shop) -> None:
    start = hour_before(shop.world.scenario.audit_at, days=1)
    shop.fake.fail("chat.postMessage", "service_unavailable", times=1000)
    for hour in range(3):
        shop.round(start + timedelta(hours=hour))
        report = shop.deliver()
        assert report.sent == 0 and report.failed == 0
    assert all(row.status == "pending" for row in shop.outbox())
    # Per channel one attempt per delivery round: the others wait behind it, in order.
    assert len(shop.fake.calls_to("chat.postMessage")) == 2 * 3

    shop.fake.recover()
    report = shop.deliver(start + timedelta(hours=4))
    assert report.failed == 0 and {row.status for row in shop.outbox()} == {"sent"}
    for channel in (CHANNEL_A, CHANNEL_B):
        [parent] = day_parents(shop.fake, channel)
        replies = summary_replies(shop.fake, channel)
        windows = [json.loads(json.dumps(r["blocks"]))[1]["elements"][0]["text"][:30] for r in replies]
        assert windows == sorted(windows) and len(replies) == 3  # oldest hour first
        assert all("Late: sent at 23:10 UTC" in blocks_text(r) for r in replies)
        assert all(r["thread_ts"] == parent["ts"] for r in replies)


def test_summaries_daily_or_off_keep_the_channel_quiet_and_the_digest_closes_the_day(
        template: WorldTemplate, tmp_path: Path, fake: FakeSlackAPI) -> None:
    with agent_world(template, tmp_path) as world:
        pixels = shop_pixels(world)
        pixels = [p.model_copy(update={"summaries": "daily"}) if p.slack_channel == CHANNEL_B else p
                  for p in pixels]
        configure(world, pixels)
        with serve_shop(world, fake) as shop:
            # 09:00 London (UTC in November) ends the summary day of the 11th.
            digest_round = world.scenario.audit_at.replace(hour=9, minute=10)
            shop.round(digest_round)
            shop.deliver()
            [parent] = day_parents(fake, CHANNEL_A)
            replies = [m for m in fake.posted(CHANNEL_A) if m.get("thread_ts") == parent["ts"]]
            assert [header(m) for m in replies] == ["capi-agent hourly summary", "capi-agent daily digest"]
            assert "Wed 11 Nov 09:00 → Thu 12 Nov 09:00" in header(parent)
            # summaries = "daily": no hourly thread, the digest alone, top-level.
            posted_b = fake.posted(CHANNEL_B)
            assert [header(m) for m in posted_b] == ["capi-agent daily digest"]
            assert "thread_ts" not in posted_b[0]

            fake.reset()
            shop.round(digest_round + timedelta(hours=1))
            shop.deliver()
            assert fake.posted(CHANNEL_B) == []  # daily: silent until the next digest
            assert len(day_parents(fake, CHANNEL_A)) == 1  # the 12th's day starts with this hour

        off = [p.model_copy(update={"summaries": "off"}) for p in pixels]
        configure(world, off, clone=False)
        with serve_shop(world, fake) as shop:
            fake.reset()
            shop.round(digest_round + timedelta(hours=2))
            shop.deliver()
            assert [m for m in fake.posted() if "summary" in header(m) or "digest" in header(m)] == []


def test_an_hour_audited_by_hand_is_summarized_too(template: WorldTemplate, tmp_path: Path,
                                                   fake: FakeSlackAPI) -> None:
    with agent_world(template, tmp_path) as world:
        pixels = [p for p in shop_pixels(world) if p.slack_channel == CHANNEL_A]
        configure(world, pixels)
        url = database_url(world)
        env = {"META_GRAPH_URL": world.simulator.url, "META_ACCESS_TOKEN": "sim-token", "CAPI_DATABASE_URL": url}
        at = world.scenario.audit_at - timedelta(days=1)
        world.simulator.state.set_now(at)
        result = CliRunner().invoke(build_app(), ["audit", "--at", at.isoformat(), "--database-url", url], env=env)
        assert result.exit_code == 0, result.output
        with serve_shop(world, fake) as shop:
            [row] = shop.outbox("summary")
            assert row.dedupe_key == f"summary:{CHANNEL_A}:2026-11-11T19:00:00Z"
            shop.deliver(at)
            assert len(summary_replies(fake, CHANNEL_A)) == 1

            # /capi audit (the same round as the CLI's) queues the hour it audits; /capi summary shows it.
            slack = build_slack_app(settings=slack_settings(fake), service=_slack_service(shop),
                                    approvers=frozenset({APPROVER}), listener_executor=InlineExecutor())
            shop.clock.now = at + timedelta(hours=1)
            world.simulator.state.set_now(shop.clock.now)
            for text in ("audit", "summary 1100000005"):
                body = command_body(text=text, user=APPROVER, channel=CHANNEL_A,
                                    response_url=fake.response_url(text.split()[0]))
                assert slack.dispatch(bolt_request(body, SECRET, form=True)).status == 200
            assert [row.dedupe_key for row in shop.outbox("summary")][-1] == \
                f"summary:{CHANNEL_A}:2026-11-11T20:00:00Z"
            [answer] = [c for c in fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == "summary"]
            shown = json.dumps(answer.args["blocks"], ensure_ascii=False)
            assert "2026-11-11 19:00 → 20:00 UTC" in shown and "`1100000005`" in shown
            assert CLONE not in shown  # only the pixel asked for

        # capi-agent summary: the same content for a terminal or a script.
        out = CliRunner().invoke(build_app(), ["summary", "--at", "2026-11-11T20:05:00Z", "--database-url", url,
                                               "--format", "json"], env=env)
        assert out.exit_code == 0, out.output
        data = json.loads(out.stdout)
        assert (data["window_start"], data["window_end"]) == ("2026-11-11T19:00:00Z", "2026-11-11T20:00:00Z")
        assert {p["pixel_id"]: p["mark"] for p in data["pixels"]} == {"1100000005": "healthy", CLONE: "warning"}
        text = CliRunner().invoke(build_app(), ["summary", "--at", "2026-11-11T20:05:00Z", "--database-url", url],
                                  env=env)
        assert text.exit_code == 0 and text.stdout.startswith("capi-agent hourly summary, 2026-11-11 19:00")


def _slack_service(shop: Shop):
    from agent.slack.agent import SlackAgent

    return SlackAgent(services=shop.services, approvers=frozenset({APPROVER}), clock=shop.clock)


@pytest.mark.postgres
def test_two_replicas_on_postgres_send_one_summary_per_channel_and_hour(
        postgres_url: str, tmp_path: Path, fake: FakeSlackAPI) -> None:
    with scenario_world(small_scenario(), tmp_path, database_url=postgres_url) as world:
        configure(world, shop_pixels(world))
        start = hour_before(world.scenario.audit_at, days=1)
        with serve_shop(world, fake, worker="replica-a") as a, serve_shop(world, fake, worker="replica-b") as b:
            for hour in range(2):
                now = start + timedelta(hours=hour)
                a.clock.now = b.clock.now = now
                world.simulator.state.set_now(now)
                errors: list[BaseException] = []

                def run(replica: Shop, now=now, errors=errors) -> None:
                    try:
                        replica.round(now)
                        replica.deliver()
                    except BaseException as exc:  # surfaced below
                        errors.append(exc)

                threads = [threading.Thread(target=run, args=(replica,)) for replica in (a, b)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
                assert errors == []
                a.deliver()
                b.deliver()
            for channel in (CHANNEL_A, CHANNEL_B):
                assert len(day_parents(fake, channel)) == 1
                replies = summary_replies(fake, channel)
                assert len(replies) == 2, [blocks_text(r)[:200] for r in replies]
            keys = [row.dedupe_key for row in a.outbox()]
            assert len(keys) == len(set(keys))
            assert {row.status for row in a.outbox()} == {"sent"}


def test_the_running_service_posts_and_mails_each_channels_summary_once(
        template: WorldTemplate, tmp_path: Path, fake: FakeSlackAPI) -> None:
    """``build_server_app`` with its loops in threads (scheduler, Slack outbox, email outbox)."""
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                      auth_require_tls=False)
    smtp.start()
    try:
        with agent_world(template, tmp_path) as world:
            pixels = [p.model_copy(update={"email_to": ["ops@shop.example"], "email_summaries": "hourly"})
                      if p.slack_channel == CHANNEL_A else p for p in shop_pixels(world)]
            configure(world, pixels)
            with serve_shop(world, fake) as shop:
                now = hour_before(world.scenario.audit_at).replace(minute=15)
                shop.clock.now = now
                world.simulator.state.set_now(now)
                shop.parts.mailer = mailer(port)
                shop.parts.scheduler_interval = shop.parts.outbox_interval = 0.2
                with ThreadedServer(build_server_app(shop.parts, run_loops=True), lifespan="on", name="serve") \
                        as server, httpx.Client(base_url=server.url, timeout=10) as http:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and not (
                            summary_replies(fake, CHANNEL_A) and summary_replies(fake, CHANNEL_B)
                            and any("Hourly summary" in str(m["Subject"]) for m in box.messages)):
                        time.sleep(0.1)
                    time.sleep(1.0)  # more rounds of every loop: nothing more to send
                    health = http.get("/healthz").json()
                assert health["loops"]["email-outbox"] and health["loops"]["scheduler"]
                for channel in (CHANNEL_A, CHANNEL_B):
                    assert len(day_parents(fake, channel)) == 1 and len(summary_replies(fake, channel)) == 1
                assert [m["Subject"] for m in box.messages if "Hourly summary" in str(m["Subject"])] == [
                    "[capi-agent] Hourly summary 2026-11-12 18:00 → 19:00 UTC (18:00 → 19:00 Europe/London): "
                    "2 pixels: 2 critical"]
                assert any("New incident" in str(m["Subject"]) for m in box.messages)
    finally:
        smtp.stop()


def test_capi_weekly_posts_the_channels_week_with_its_picture(template: WorldTemplate, tmp_path: Path,
                                                              fake: FakeSlackAPI,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """``/capi weekly`` through Bolt: the report of the channel's pixels for the week that ended at their
    weekday and hour, visible to the channel, its open incident linked to its message, then the picture
    uploaded to the same channel; a pixel of another channel is not in it, and nothing raw is."""
    caplog.set_level(logging.DEBUG)
    scenario = template.scenario
    with agent_world(template, tmp_path, extra_events=canary_lines(scenario.audit_at, scenario.pixel_id)) as world:
        # The week ends on the audit day at 20:00 London time (UTC in November), after the audited hours.
        configure(world, shop_pixels(world, weekly_day="thu", weekly_hour=20))
        with serve_shop(world, fake) as shop:
            shop.round(hour_before(scenario.audit_at))  # the missed batch: an incident message
            assert shop.deliver().failed == 0
            [incident] = [m for m in incident_posts(fake, CHANNEL_A)
                          if MISSED_BATCH in header(m) and "pixel `1100000005`" in blocks_text(m)]
            slack = build_slack_app(settings=slack_settings(fake), service=_slack_service(shop),
                                    approvers=frozenset({APPROVER}), listener_executor=InlineExecutor())
            shop.clock.now = scenario.audit_at + timedelta(hours=2)
            body = command_body(text="weekly", user="U0SOMEONE", channel=CHANNEL_A,
                                response_url=fake.response_url("weekly"))
            assert slack.dispatch(bolt_request(body, SECRET, form=True)).status == 200
    [answer] = [c for c in fake.calls_to(RESPONSE_URL_METHOD) if c.args["_hook"] == "weekly"]
    assert answer.args["response_type"] == "in_channel"
    shown = json.dumps(answer.args["blocks"], ensure_ascii=False)
    assert "capi-agent weekly report" in shown and "Thu 05 Nov 20:00 → Thu 12 Nov 2026 20:00" in shown
    assert "`1100000005`" in shown and f"`{CLONE}`" in shown
    assert EMPTY_1 not in shown and BROKEN not in shown  # channel B's pixels have their own report
    link = f"https://slack.com/archives/{CHANNEL_A}/p{incident['ts'].replace('.', '')}"
    assert f"<{link}|{MISSED_BATCH} (critical)>" in shown
    # (the incident message's chart is an upload too)
    [upload] = [c for c in fake.calls_to("files.completeUploadExternal") if "Weekly health" in json.dumps(c.args)]
    assert upload.args["channel_id"] == CHANNEL_A
    seen = json.dumps([call.args for call in fake.calls], ensure_ascii=False) + caplog.text
    for secret in (CANARY_EMAIL, CANARY_PHONE, "6505550199", BOT_TOKEN):
        assert secret not in seen
