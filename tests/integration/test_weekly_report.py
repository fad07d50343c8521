"""The weekly agency view: its content from a seeded ledger (SQLite and Postgres), worst first, the
small-multiples PNG (panels counted on the figure, size read from the PNG header), the week's bounds
in the channel's time zone, queueing once per channel and week, one Slack post and one upload through
the fake Slack Web API whatever the replicas and rounds, the email, and ``capi-agent report --week``."""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from agent.announce import after_round
from agent.cli import build_app
from agent.email.deliver import deliver_email_outbox
from agent.slack.notifier import SlackNotifier
from agent.slack.outbox import deliver_outbox
from agent.summary.weekly import DayPoint, PixelWeek, WeeklyReport, build_weekly, local_days, week_end_at
from agent.summary.weekly_chart import MAX_PANELS, PANEL_GID, build_figure, render_png
from agent.summary.weekly_queue import WAIT_AT_MOST, enqueue_weekly_due, weekly_audiences
from agent.summary.weekly_text import render_text, slack_blocks
from tests.fakes.slack_api import UPLOAD_METHOD, FakeSlackAPI
from tests.fixtures.db import event_line, sha, write_jsonl
from tools.checks.types import EventQuality, MetaHourlyCount, QualitySnapshot
from tools.fixes.models import FixProposalRow, FixTrailRow
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.models import Audit, IncidentRow
from tools.ledger.outbox import OutboxMessage
from tools.ledger.pixels import PixelConfig, load_pixels_toml, sync_pixels
from tools.ledger.snapshots import save_meta_counts, save_quality_snapshot
from tools.schedule.claims import claim, finish
from tools.timeutil import HOUR

ZONE = "Europe/Paris"
END = datetime(2026, 11, 30, 8, tzinfo=UTC)  # Monday 30 November, 09:00 in Paris
START = END - timedelta(days=7)
CHANNEL = "C0AGENCY"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# critical: an open critical incident and server events down to 40 % of the browser's this week;
# warning: an open warning and 5 hours with findings; fixed: an incident opened, fixed and resolved
# during the week; silent: nothing at all; healthy: nothing wrong. Worst first, as documented.
WORST_FIRST = ["p-critical", "p-warning", "p-fixed", "p-silent", "p-healthy"]


def pixels() -> list[PixelConfig]:
    return [PixelConfig(id=pid, name=pid.removeprefix("p-").title(), timezone=ZONE, slack_channel=CHANNEL,
                        email_to=["agency@example.com"] if pid == "p-healthy" else [])
            for pid in sorted(WORST_FIRST)]


def _hours(start: datetime, end: datetime) -> list[datetime]:
    return [start + n * HOUR for n in range(int((end - start) / HOUR))]


def _audits(session: Session, pid: str, hours: list[datetime], severities) -> None:  # type: ignore[no-untyped-def]
    for n, h in enumerate(hours):
        critical, warning = severities(n)
        session.add(Audit(pixel_id=pid, window_start=h, window_end=h + HOUR, at=h + HOUR,
                          status="findings" if warning or critical else "ok", findings=warning + critical,
                          critical=critical, warning=warning, result={}))


def seed(session: Session, *, last_hour_audited: bool = True) -> None:
    """Two weeks of Meta counts, daily quality reads, a week of hourly audits, incidents and a fix."""
    sync_pixels(session, pixels(), now=START)
    before, week = _hours(START - timedelta(days=7), START), _hours(START, END)
    for pid in WORST_FIRST:  # every pixel is audited every hour; the silent one has no events
        if pid == "p-silent":
            _audits(session, pid, week if last_hour_audited else week[:-1], lambda n: (0, 0))
            continue
        server_now = 4 if pid == "p-critical" else 10
        counts = [MetaHourlyCount(hour=h, event_name="Purchase", source=source,  # type: ignore[arg-type]
                                  count=10 if source == "browser" or h < START else server_now)
                  for h in before + week for source in ("browser", "server")]
        save_meta_counts(session, pixel_id=pid, counts=counts, fetched_at=END, window_start=before[0],
                         window_end=END)
        if pid == "p-healthy":  # Meta's own coverage figure wins over the formula on counts
            for day in range(7):
                save_quality_snapshot(session, pixel_id=pid, snapshot=QualitySnapshot(
                    fetched_at=START + timedelta(days=day, hours=2), events=(
                        EventQuality(event_name="Purchase", composite_score=7.0 + day / 5, event_coverage_pct=90.0),
                        EventQuality(event_name="Lead", composite_score=6.0, event_coverage_pct=80.0))))
        _audits(session, pid, week if last_hour_audited else week[:-1], lambda n, pid=pid: (
            int(pid == "p-critical" and n >= 100),
            int((pid == "p-warning" and n < 5) or (pid == "p-fixed" and 20 <= n < 23))))
    session.add(IncidentRow(id="i-crit", pixel_id="p-critical", fingerprint="fc", root_cause="missed_batch",
                            severity="critical", status="open", opened_at=START + 100 * HOUR, last_seen_at=END))
    session.add(IncidentRow(id="i-warn", pixel_id="p-warning", fingerprint="fw", root_cause="missed_batch",
                            severity="warning", status="open", opened_at=START - timedelta(days=2),
                            last_seen_at=END))
    session.add(IncidentRow(id="i-old", pixel_id="p-warning", fingerprint="fo", root_cause="missed_batch",
                            severity="critical", status="resolved", opened_at=START - timedelta(days=9),
                            last_seen_at=START - timedelta(days=8), resolved_at=START - timedelta(days=8)))
    session.add(IncidentRow(id="i-fixed", pixel_id="p-fixed", fingerprint="ff", root_cause="missed_batch",
                            severity="critical", status="resolved", opened_at=START + 20 * HOUR,
                            last_seen_at=START + 23 * HOUR, resolved_at=START + 23 * HOUR))
    session.add(FixProposalRow(id="fix_week", pixel_id="p-fixed", incident_id="i-fixed", kind="replay",
                               status="executed", params={}, preview={}, created_at=START + 21 * HOUR,
                               expires_at=START + 45 * HOUR, decided_by="slack:U123", decided_at=START + 22 * HOUR,
                               verification={"resolved": True}))
    session.add(FixProposalRow(id="fix_before", pixel_id="p-fixed", kind="replay", status="executed", params={},
                               preview={}, created_at=START - timedelta(days=3),
                               expires_at=START - timedelta(days=2)))
    session.flush()
    session.add(FixTrailRow(proposal_id="fix_week", actor="slack:U123", action="approved", at=START + 22 * HOUR))
    session.add(FixTrailRow(proposal_id="fix_week", actor="slack:U123", action="executed", at=START + 22 * HOUR,
                            detail={"sent": 129, "received": 129}))
    session.add(FixTrailRow(proposal_id="fix_before", actor="agent", action="executed",
                            at=START - timedelta(days=3), detail={"sent": 5, "received": 5}))
    session.commit()


# --- the week's bounds ------------------------------------------------------------------------------

def test_the_week_ends_at_the_last_configured_weekday_and_hour_in_the_channels_time_zone() -> None:
    assert week_end_at(END, timezone=ZONE) == END  # exactly Monday 09:00 in Paris
    assert week_end_at(END - timedelta(minutes=1), timezone=ZONE) == END - timedelta(days=7)
    assert week_end_at(END + timedelta(days=3), timezone=ZONE) == END
    assert week_end_at(END, timezone="UTC", weekday="fri", hour=17) == datetime(2026, 11, 27, 17, tzinfo=UTC)
    # Across the change to summer time (Paris, 29 March 2026) the week keeps local 09:00 at both ends
    # and seven whole local days, one of them 23 hours long.
    end = week_end_at(datetime(2026, 3, 30, 12, tzinfo=UTC), timezone=ZONE)
    days = local_days(end, ZONE)
    assert end == datetime(2026, 3, 30, 7, tzinfo=UTC) and days[0][1] == datetime(2026, 3, 23, 8, tzinfo=UTC)
    assert [d[0].isoformat() for d in days][-1] == "2026-03-29" and days[-2][2] - days[-2][1] == 23 * HOUR


# --- content from the ledger ------------------------------------------------------------------------

def test_the_report_reads_the_ledger_and_puts_the_worst_pixels_first(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        seed(session)
        report = build_weekly(session, pixels=pixels(), end=END, timezone=ZONE)
    body = report.to_json()
    assert [p["pixel_id"] for p in body["pixels"]] == WORST_FIRST
    assert (body["week_start"], body["week_end"]) == ("2026-11-23T08:00:00Z", "2026-11-30T08:00:00Z")
    by_id = {p.pixel_id: p for p in report.pixels}

    critical = by_id["p-critical"]
    assert [i.id for i in critical.open_incidents] == ["i-crit"] and critical.opened == 1
    assert critical.hours_with_incidents == 68 and critical.hours_audited == 168
    assert (critical.server, critical.browser, critical.ratio) == (4 * 168, 10 * 168, 0.4)
    assert critical.coverage == 40.0 and critical.previous_coverage == 100.0 and critical.coverage_drop == 60.0
    assert [d.coverage_source for d in critical.days] == ["counts"] * 7 and critical.emq is None

    warning = by_id["p-warning"]
    # Open at the week's end, opened before it; the incident resolved before the week is not counted.
    assert [i.id for i in warning.open_incidents] == ["i-warn"] and (warning.opened, warning.resolved) == (0, 0)
    assert warning.hours_with_incidents == 5

    fixed = by_id["p-fixed"]
    assert fixed.open_incidents == [] and (fixed.opened, fixed.resolved, fixed.hours_with_incidents) == (1, 1, 3)
    [fix] = fixed.fixes  # the run that ended during the week, not the one before it
    assert (fix.id, fix.kind, fix.status, fix.sent, fix.received, fix.resolved, fix.approved_by) == (
        "fix_week", "replay", "executed", 129, 129, True, "slack:U123")

    healthy = by_id["p-healthy"]
    assert [d.day for d in healthy.days] == [f"2026-11-{d}" for d in range(23, 30)]
    assert [d.coverage for d in healthy.days] == [85.0] * 7 and healthy.days[0].coverage_source == "meta"
    assert [d.emq for d in healthy.days] == [6.5, 6.6, 6.7, 6.8, 6.9, 7.0, 7.1] and healthy.emq == 7.1
    assert healthy.ratio == 1.0 and healthy.has_data

    silent = by_id["p-silent"]
    assert not silent.has_data and silent.ratio is None and silent.coverage is None and silent.hours_audited == 168
    assert all(d.server == 0 and d.coverage is None and d.emq is None for d in silent.days)

    # The JSON round-trips (it is the outbox payload) and every view says the silent pixel has no data.
    assert WeeklyReport.from_json(json.loads(json.dumps(body))) == report
    text = render_text(report)
    assert "4. [no data] p-silent Silent" in text and "no data this week: Meta counted no event" in text
    assert "fix: replay fix_week executed (approved by slack:U123): 129 sent, 129 received, resolved" in text
    assert "open: Events recorded but never sent (critical, missed_batch)" in text


def test_a_failed_audit_and_a_pixel_with_no_history_do_not_break_the_report(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        claim(session, pixel_id="p-broken", window_end=END - HOUR, worker="w", now=END)
        finish(session, pixel_id="p-broken", window_end=END - HOUR, worker="w", now=END, status="failed",
               error="boom")
        report = build_weekly(session, pixels=[PixelConfig(id="p-new"), PixelConfig(id="p-broken")],
                              end=END, timezone="UTC")
    assert [(p.pixel_id, p.hours_failed, p.has_data) for p in report.pixels] == [
        ("p-broken", 1, False), ("p-new", 0, False)]
    assert render_png(report).startswith(PNG_SIGNATURE)


def test_no_customer_information_reaches_the_report(sqlite_engine: Engine, tmp_path: Path) -> None:
    canary_email, canary_phone = "canary.weekly+h5@example.org", "+1 650 555 0142"
    line = event_line(event_time=END - timedelta(days=2), pixel_id="p-healthy", event_id="canary-weekly",
                      user_data={"em": [canary_email], "ph": [canary_phone], "client_ip_address": "198.51.100.77"})
    ingest_events_jsonl(session_or_engine=sqlite_engine, path=write_jsonl(tmp_path / "e.jsonl", [line]))
    with Session(sqlite_engine) as session:
        seed(session)
        report = build_weekly(session, pixels=pixels(), end=END, timezone=ZONE)
    shown = json.dumps(report.to_json()) + render_text(report) + json.dumps(slack_blocks(report))
    for secret in (canary_email, "6505550142", "198.51.100.77", sha(canary_email)):
        assert secret not in shown


# --- the picture and 1000 pixels -----------------------------------------------------------------------

def _synthetic(n: int) -> WeeklyReport:
    days = [DayPoint(day=f"2026-11-{d}", server=90, browser=100, ratio=0.9, coverage=90.0,
                     coverage_source="counts", emq=6.5) for d in range(23, 30)]
    weeks = [PixelWeek(pixel_id=f"{1000000000 + i}", name=f"Shop {i}", days=days, server=630, browser=700,
                       ratio=0.9, coverage=90.0, previous_coverage=90.0 + i % 7, emq=6.5, hours_audited=168,
                       hours_with_incidents=0, hours_failed=0) for i in range(n)]
    return WeeklyReport(week_start="2026-11-23T08:00:00Z", week_end="2026-11-30T08:00:00Z", timezone=ZONE,
                        pixels=weeks)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _panels(report: WeeklyReport) -> int:
    return sum(axes.get_gid() == PANEL_GID for axes in build_figure(report).axes)


def test_one_panel_per_pixel_worst_first_at_most_24_and_the_rest_in_the_text() -> None:
    assert _panels(_synthetic(3)) == 3 and _panels(_synthetic(1)) == 1 and _panels(_synthetic(0)) == 0
    big = _synthetic(1000)
    figure = build_figure(big)
    panels = [axes for axes in figure.axes if axes.get_gid() == PANEL_GID]
    assert len(panels) == MAX_PANELS == 24
    assert panels[0].get_title(loc="left").startswith("1. 1000000000")
    assert "976 more pixel(s) listed in the text" in figure.get_suptitle()
    png = render_png(big)
    width, height = _png_size(png)
    inches = figure.get_size_inches() * figure.dpi
    assert (width, height) == (round(inches[0]), round(inches[1])) and width <= 1200 and height <= 1200
    # The JSON and the text have every pixel; Slack details ten and names the rest by group.
    assert len(big.to_json()["pixels"]) == 1000
    assert render_text(big).count("[healthy] 1") == 1000
    blocks = slack_blocks(big)
    assert len(blocks) <= 50 and "and 990 more pixel(s): 990 healthy" in json.dumps(blocks)


def test_names_cannot_ping_or_link_in_slack() -> None:
    report = _synthetic(1)
    report = replace(report, pixels=[replace(report.pixels[0], name="<!channel> <https://evil.example|x>")])
    text = json.dumps(slack_blocks(report))
    assert "<!channel>" not in text and "<https://evil" not in text and "&lt;!channel&gt;" in text


# --- queueing and delivery ----------------------------------------------------------------------------

def _weekly_rows(session: Session) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind.in_(["weekly", "email_weekly"]))))  # type: ignore[attr-defined]


def _weekly_posts(fake: FakeSlackAPI) -> list[dict]:
    return [m for m in fake.posted(CHANNEL) if "weekly report" in json.dumps(m["blocks"])]


def test_due_only_at_the_weekday_once_the_last_hour_is_audited(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        seed(session, last_hour_audited=False)
        configs = pixels()
        # Last week's report: the agent did not watch that week.
        assert enqueue_weekly_due(session, pixels=configs, now=END - timedelta(minutes=1)) == 0
        # The last hour of the week is not audited yet for most pixels: wait (up to WAIT_AT_MOST).
        assert enqueue_weekly_due(session, pixels=configs, now=END + timedelta(minutes=10)) == 0
        for pixel in configs:
            session.add(Audit(pixel_id=pixel.id, window_start=END - HOUR, window_end=END, at=END, status="ok",
                              result={}))
        session.commit()
        # Slack channel and the healthy pixel's email address, once each however many rounds ask.
        assert enqueue_weekly_due(session, pixels=configs, now=END + timedelta(minutes=11)) == 2
        after_round(session, pixels=configs, audited=[], now=END + timedelta(minutes=12))  # the serve loop's
        session.commit()
        rows = _weekly_rows(session)
    assert sorted((r.kind, r.channel, r.dedupe_key) for r in rows) == [
        ("email_weekly", "email:agency@example.com", "email-weekly:email:agency@example.com:2026-11-30"),
        ("weekly", CHANNEL, f"weekly:{CHANNEL}:2026-11-30")]
    [slack_row] = [r for r in rows if r.kind == "weekly"]
    assert [p["pixel_id"] for p in slack_row.payload["report"]["pixels"]] == WORST_FIRST
    [email_row] = [r for r in rows if r.kind == "email_weekly"]
    assert [p["pixel_id"] for p in email_row.payload["report"]["pixels"]] == ["p-healthy"]


def test_a_late_hour_waits_at_most_six_hours_and_off_or_unwatched_channels_get_nothing(
        sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        seed(session, last_hour_audited=False)
        off = [p.model_copy(update={"weekly_report": "off"}) for p in pixels()]
        assert weekly_audiences(off) == []
        assert enqueue_weekly_due(session, pixels=off, now=END + WAIT_AT_MOST) == 0
        # Pixels the agent never audited that week: no report of a week it did not watch.
        fresh = [PixelConfig(id="p-new", slack_channel="C0FRESH", timezone=ZONE)]
        assert enqueue_weekly_due(session, pixels=fresh, now=END + WAIT_AT_MOST) == 0
        assert enqueue_weekly_due(session, pixels=pixels(), now=END + WAIT_AT_MOST - HOUR) == 0
        assert enqueue_weekly_due(session, pixels=pixels(), now=END + WAIT_AT_MOST) == 2
        # Three days late (the service was down): that week is not sent any more.
        assert enqueue_weekly_due(session, pixels=pixels(), now=END + timedelta(days=7, hours=73)) == 0


def test_a_report_that_cannot_be_built_leaves_the_hourly_summaries_alone(
        sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.summary.weekly_queue as weekly_queue

    def broken(*args: object, **kwargs: object) -> WeeklyReport:
        raise RuntimeError("boom")

    monkeypatch.setattr(weekly_queue, "build_weekly", broken)
    with Session(sqlite_engine) as session:
        seed(session)
        after_round(session, pixels=pixels(), audited=[END], now=END + timedelta(minutes=10))
        session.commit()
        kinds = {row.kind for row in session.scalars(select(OutboxMessage))}
    assert "summary" in kinds and not kinds & {"weekly", "email_weekly"}


def test_two_replicas_and_two_rounds_post_the_report_and_upload_its_picture_once(
        ledger_engine: Engine, fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    with Session(ledger_engine) as session:
        seed(session)
        # The critical incident's own message, posted earlier: the weekly report links to it.
        session.add(OutboxMessage(dedupe_key="incident:fc:new", channel=CHANNEL, kind="incident",
                                  incident_id="i-crit", status="sent", message_ts="1763000000.000100",
                                  created_at=START + 100 * HOUR))
        session.commit()
    now = END + timedelta(minutes=10)

    def replica() -> None:  # each replica: its own session, a scheduler round, then its outbox sender
        with Session(ledger_engine) as session:
            after_round(session, pixels=pixels(), audited=[END], now=now)
            session.commit()
        deliver_outbox(lambda: Session(ledger_engine), notifier, now=now)

    if ledger_engine.dialect.name == "postgresql":  # truly at once on a shared database
        threads = [threading.Thread(target=replica) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    replica()
    replica()
    [post] = _weekly_posts(fake)
    assert len(fake.calls_to("files.completeUploadExternal")) == 1 and len(fake.calls_to(UPLOAD_METHOD)) == 1
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == CHANNEL and "thread_ts" not in complete.args
    [upload] = fake.calls_to(UPLOAD_METHOD)
    assert upload.content.startswith(PNG_SIGNATURE)
    text = json.dumps(post["blocks"])
    assert "<https://slack.com/archives/C0AGENCY/p1763000000000100|Events recorded but never sent (critical)>" in text
    assert "Late:" not in text
    assert text.index("p-critical") < text.index("p-warning") < text.index("p-fixed") < text.index("p-silent")
    with Session(ledger_engine) as session:
        [row] = [r for r in _weekly_rows(session) if r.kind == "weekly"]
        assert (row.status, row.message_ts) == ("sent", post["ts"])


def test_a_slack_outage_keeps_the_report_pending_then_posts_it_once(
        sqlite_engine: Engine, fake: FakeSlackAPI, notifier: SlackNotifier) -> None:
    engine = sqlite_engine
    with Session(engine) as session:
        seed(session)
        enqueue_weekly_due(session, pixels=pixels(), now=END)
        session.commit()
    fake.fail("chat.postMessage", "service_unavailable", times=50)
    report = deliver_outbox(lambda: Session(engine), notifier, now=END)
    assert report.retry_later == 1 and fake.calls_to(UPLOAD_METHOD) == []
    fake.recover()
    assert deliver_outbox(lambda: Session(engine), notifier, now=END + 8 * HOUR).sent == 1
    assert deliver_outbox(lambda: Session(engine), notifier, now=END + 9 * HOUR).sent == 0
    [post] = _weekly_posts(fake)
    assert len(fake.calls_to(UPLOAD_METHOD)) == 1 and "Late: sent at 16:00 UTC" in json.dumps(post["blocks"])


class RecordingMailer:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> str:
        self.sent.append(message)
        return make_msgid(domain="test.local")


def test_the_email_carries_the_text_and_the_picture_inline_once(sqlite_engine: Engine) -> None:
    mailer = RecordingMailer()
    engine = sqlite_engine
    with Session(engine) as session:
        seed(session)
        enqueue_weekly_due(session, pixels=pixels(), now=END)
        session.commit()
    for _ in range(2):
        deliver_email_outbox(lambda: Session(engine), mailer, now=END)  # type: ignore[arg-type]
    [message] = mailer.sent
    assert message["To"] == "agency@example.com" and "Weekly report" in message["Subject"]
    images = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0].get_content().startswith(PNG_SIGNATURE)
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_content()
    assert f"cid:{str(images[0]['Content-ID']).strip('<>')}" in html
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_content()
    assert "1. [healthy] p-healthy Healthy" in text


def test_channel_settings_are_read_from_pixels_toml(tmp_path: Path) -> None:
    path = tmp_path / "pixels.toml"
    path.write_text('[[pixels]]\nid = "1"\nslack_channel = "#a"\n[[pixels]]\nid = "2"\nslack_channel = "#b"\n'
                    'weekly_report = false\n[channels."#a"]\nweekly_day = "fri"\nweekly_hour = 17\n')
    first, second = load_pixels_toml(path)
    assert (first.weekly_report, first.weekly_day, first.weekly_hour) == ("on", "fri", 17)
    assert second.weekly_report == "off" and (second.weekly_day, second.weekly_hour) == ("mon", 9)
    path.write_text('[[pixels]]\nid = "1"\nweekly_hour = 24\n')
    with pytest.raises(ValueError, match="weekly_hour"):
        load_pixels_toml(path)


# --- the command --------------------------------------------------------------------------------------

@pytest.fixture
def seeded_url(sqlite_url: str, sqlite_engine: Engine) -> str:
    with Session(sqlite_engine) as session:
        seed(session)
    return sqlite_url


def test_report_week_as_json_text_and_png(seeded_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    at = ["--at", "2026-12-01T10:00:00Z", "--database-url", seeded_url]
    result = runner.invoke(build_app(), ["report", "--week", "--format", "json", *at])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert [p["pixel_id"] for p in body["pixels"]] == WORST_FIRST
    assert body["week_end"] == "2026-11-30T08:00:00Z" and body["timezone"] == ZONE  # the pixels' zone

    result = runner.invoke(build_app(), ["report", "--week", "--pixel", "p-silent", "--pixel", "p-fixed", *at])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "2 pixels: 1 findings, 1 no data"
    out = tmp_path / "weekly.png"
    result = runner.invoke(build_app(), ["report", "--week", "--format", "png", "--out", str(out), *at])
    assert result.exit_code == 0, result.output
    assert _png_size(out.read_bytes())[0] > 0 and "5 panel(s)" in result.output


def test_report_refuses_what_it_cannot_do(seeded_url: str) -> None:
    runner = CliRunner()
    for args, message in ((["report"], "--week"), (["report", "--week", "--format", "png"], "--out"),
                          (["report", "--week", "--at", "monday"], "not an ISO-8601 time"),
                          (["report", "--week", "--pixel", "nope"], "nope")):
        result = runner.invoke(build_app(), [*args, "--database-url", seeded_url])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
