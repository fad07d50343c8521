"""What a summary says: usual levels (same hour of past weeks), status marks (healthy, warning, critical,
not judged, audit failed) read from the ledger, pixels with something open first, healthy pixels
folded, the day a summary's thread belongs to, and text and blocks that cannot ping or link."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agent.slack.summary_blocks import summary_blocks
from agent.summary.collect import build_summary, not_judged_of, pixel_line
from agent.summary.levels import usual_level
from agent.summary.model import Level, OpenIncident, PixelLine, Summary, WaitingFix, ordered, pixel_mark
from agent.summary.queue import audiences, day_bounds, is_digest_hour, thread_day
from agent.summary.text import render_text
from tools.checks.types import Finding, MetaHourlyCount
from tools.ledger.incidents import save_audit
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import save_meta_counts
from tools.schedule.claims import claim, finish

if TYPE_CHECKING:
    from evals.harness import ScenarioWorld

H = datetime(2026, 11, 30, 15, tzinfo=UTC)


@pytest.fixture
def template_world_services(world: ScenarioWorld) -> Iterator:
    from tests.agentworld import agent_services

    with agent_services(world) as services:
        yield services, world  # a Monday, 15:00-16:00 UTC
WEEK = timedelta(days=7)


# --- usual level ----------------------------------------------------------------------------------

def test_the_usual_level_is_the_median_of_the_same_hour_in_past_weeks() -> None:
    counts = {H - WEEK: 100.0, H - 2 * WEEK: 120.0, H - 3 * WEEK: 10_000.0, H - 4 * WEEK: 90.0,
              H - timedelta(days=1): 5.0}  # yesterday is not the same hour of the week
    usual = usual_level(counts, start=H, end=H + timedelta(hours=1), since=H - 5 * WEEK)
    assert usual is not None and (usual.value, usual.samples, usual.basis) == (110.0, 4, "weekly")
    # Weeks before the pixel had data are not samples (not zeros).
    young = usual_level(counts, start=H, end=H + timedelta(hours=1), since=H - WEEK - timedelta(hours=3))
    assert young is not None and (young.value, young.samples) == (100.0, 1)


def test_without_a_week_of_history_past_days_stand_in_and_nothing_means_none() -> None:
    counts = {H - timedelta(days=1): 40.0, H - timedelta(days=2): 60.0}
    usual = usual_level(counts, start=H, end=H + timedelta(hours=1), since=H - timedelta(days=2))
    assert usual is not None and (usual.value, usual.basis) == (50.0, "daily")
    assert usual_level(counts, start=H, end=H + timedelta(hours=1), since=None) is None
    assert usual_level({}, start=H, end=H + timedelta(hours=1), since=H) is None


# --- status marks ---------------------------------------------------------------------------------

def test_status_marks() -> None:
    def mark(**kw: object) -> str:
        base = {"audited": True, "failed": False, "critical": 0, "warning": 0, "no_data": False,
                "all_not_judged": False}
        return pixel_mark(**{**base, **kw})  # type: ignore[arg-type]

    assert mark() == "healthy"
    assert mark(warning=2) == "warning" and mark(warning=1, critical=1) == "critical"
    assert mark(no_data=True) == "not_judged" and mark(all_not_judged=True) == "not_judged"
    assert mark(critical=1, all_not_judged=True) == "critical"  # a finding is a judgement
    assert mark(audited=False, failed=True) == "audit_failed" and mark(audited=False) == "not_judged"


def test_not_judged_is_read_where_the_audit_puts_it_and_may_be_absent() -> None:
    item = {"event_name": "Lead", "source": "server", "reason": "too few events"}
    assert not_judged_of({"not_judged": [item]}, "1") == [item]
    assert not_judged_of({"pixels": [{"pixel_id": "1", "not_judged": [item]}]}, "1") == [item]
    assert not_judged_of({"pixels": [{"pixel_id": "2", "not_judged": [item]}]}, "1") == []
    assert not_judged_of({}, "1") == [] and not_judged_of(None, "1") == []


def _counts(session: Session, pixel_id: str, hours: list[datetime], per_hour: int) -> None:
    counts = [MetaHourlyCount(hour=h, event_name=name, source=source, count=per_hour)  # type: ignore[arg-type]
              for h in hours for name in ("Lead",) for source in ("browser", "server")]
    save_meta_counts(session, pixel_id=pixel_id, counts=counts, fetched_at=H + timedelta(hours=1),
                     window_start=min(hours), window_end=max(hours) + timedelta(hours=1))


def test_marks_from_the_ledger(ledger_engine: Engine) -> None:
    end = H + timedelta(hours=1)
    thin = [{"event_name": "Lead", "source": s, "reason": "fewer than 3 events a week"} for s in ("browser", "server")]
    with Session(ledger_engine) as session:
        for pixel_id in ("p-healthy", "p-thin", "p-partly-thin"):
            _counts(session, pixel_id, [H - 2 * WEEK, H - WEEK, H], 3)
        save_audit(session, pixel_id="p-healthy", window_start=H, window_end=end, at=end, findings=[])
        save_audit(session, pixel_id="p-thin", window_start=H, window_end=end, at=end, findings=[],
                   result={"not_judged": thin})
        save_audit(session, pixel_id="p-partly-thin", window_start=H, window_end=end, at=end, findings=[],
                   result={"not_judged": thin[:1]})
        session.commit()
        claim(session, pixel_id="p-failed", window_end=end, worker="w", now=end)
        finish(session, pixel_id="p-failed", window_end=end, worker="w", now=end, status="failed", error="boom")
        marks = {pid: pixel_line(session, pixel=PixelConfig(id=pid), start=H, end=end).mark
                 for pid in ("p-healthy", "p-thin", "p-partly-thin", "p-failed", "p-never")}
        line = pixel_line(session, pixel=PixelConfig(id="p-healthy"), start=H, end=end)
    assert marks == {"p-healthy": "healthy", "p-thin": "not_judged", "p-partly-thin": "healthy",
                     "p-failed": "audit_failed", "p-never": "not_judged"}
    assert line.server == Level(count=3, usual=3.0, basis="weekly") and line.browser.count == 3


# --- layout ---------------------------------------------------------------------------------------

def _line(pixel_id: str, mark: str, **extra: object) -> PixelLine:
    return PixelLine(pixel_id=pixel_id, name="", mark=mark, server=Level(10, 12.0, "weekly"),  # type: ignore[arg-type]
                     browser=Level(20, 18.0, "weekly"), emq=6.4, **extra)  # type: ignore[arg-type]


def test_pixels_with_something_open_come_first_and_many_healthy_ones_share_a_line() -> None:
    opened = OpenIncident(id="i1", root_cause="missed_batch", title="Missed batch", severity="warning")
    lines = ordered([_line("a-healthy", "healthy"), _line("b-warn", "warning"),
                     _line("c-open", "healthy", incidents=[opened]), _line("d-crit", "critical"),
                     *[_line(f"h{n}", "healthy") for n in range(4)]])
    assert [p.pixel_id for p in lines][:3] == ["c-open", "d-crit", "b-warn"]
    summary = Summary(kind="hourly", window_start="2026-11-30T15:00:00Z", window_end="2026-11-30T16:00:00Z",
                      timezone="Europe/Paris", pixels=lines)
    text = render_text(summary, links={"i1": "https://slack.com/archives/C1/p1"})
    assert text.splitlines()[0] == ("capi-agent hourly summary, 2026-11-30 15:00 → 16:00 UTC "
                                    "(16:00 → 17:00 Europe/Paris)")
    assert "[healthy] 5 pixels: a-healthy, h0, h1, h2, h3" in text
    assert "open incident: Missed batch (warning, missed_batch) https://slack.com/archives/C1/p1" in text
    blocks = json.dumps(summary_blocks(summary, links={"i1": "https://slack.com/archives/C1/p1"}),
                        ensure_ascii=False)
    assert "*5 healthy pixels*" in blocks and "<https://slack.com/archives/C1/p1|Missed batch (warning)>" in blocks


def test_names_from_configuration_cannot_ping_or_forge_links() -> None:
    evil = PixelLine(pixel_id="p1", name="<!channel> <https://evil.example|click>", mark="warning",
                     server=Level(1), browser=Level(1),
                     fixes=[WaitingFix(id="fix_1", kind="replay", incident_id=None, total_events=5)])
    summary = Summary(kind="hourly", window_start="2026-11-30T15:00:00Z", window_end="2026-11-30T16:00:00Z",
                      timezone="UTC", pixels=[evil])
    blocks = json.dumps(summary_blocks(summary))
    assert "<!channel>" not in blocks and "<https://evil" not in blocks and "&lt;!channel&gt;" in blocks


def test_a_summary_survives_the_outbox_round_trip(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        summary = build_summary(session, pixels=[PixelConfig(id="p1")], start=H, end=H + timedelta(hours=1))
    assert Summary.from_json(json.loads(json.dumps(summary.to_json()))) == summary


# --- days and audiences ---------------------------------------------------------------------------

def test_a_summary_day_runs_from_one_digest_hour_to_the_next_in_the_channels_zone() -> None:
    paris = "Europe/Paris"  # UTC+1 in winter: 09:00 local is 08:00 UTC
    assert thread_day(datetime(2026, 11, 30, 8, tzinfo=UTC), paris).isoformat() == "2026-11-29"
    assert thread_day(datetime(2026, 11, 30, 9, tzinfo=UTC), paris).isoformat() == "2026-11-30"
    assert thread_day(datetime(2026, 12, 1, 7, tzinfo=UTC), paris).isoformat() == "2026-11-30"
    assert is_digest_hour(datetime(2026, 11, 30, 8, tzinfo=UTC), paris)
    start, end = day_bounds(thread_day(datetime(2026, 11, 30, 12, tzinfo=UTC), paris), paris)
    assert (start, end) == (datetime(2026, 11, 30, 8, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC))


def test_audiences_group_pixels_by_channel_and_address_and_respect_off() -> None:
    pixels = [PixelConfig(id="1", slack_channel="C1", email_to=["A@x.example"], email_summaries="hourly"),
              PixelConfig(id="2", slack_channel="C1", summaries="daily", email_to=["a@x.example"]),
              PixelConfig(id="3", slack_channel="C2", summaries="off", email_to=["b@x.example"],
                          email_summaries="off"),
              PixelConfig(id="4")]
    found = {(a.target, tuple(p.id for p in a.pixels), tuple(p.id for p in a.hourly)) for a in audiences(pixels)}
    assert found == {("C1", ("1", "2"), ("1",)), ("email:a@x.example", ("1", "2"), ("1",))}


def test_a_channel_table_in_pixels_toml_sets_the_summaries_of_its_pixels(tmp_path) -> None:
    from tools.ledger.pixels import load_pixels_toml

    path = tmp_path / "pixels.toml"
    path.write_text('[[pixels]]\nid = "1"\nslack_channel = "#shops"\n\n'
                    '[[pixels]]\nid = "2"\nslack_channel = "#shops"\nsummaries = "hourly"\n\n'
                    '[[pixels]]\nid = "3"\nslack_channel = "#labs"\n\n'
                    '[channels."#shops"]\nsummaries = "daily"\n')
    assert {p.id: p.summaries for p in load_pixels_toml(path)} == {"1": "daily", "2": "hourly", "3": "hourly"}
    path.write_text('[[pixels]]\nid = "1"\n\n[channels."#shops"]\ntoken = "x"\n')
    with pytest.raises(ValueError, match="channels"):
        load_pixels_toml(path)


def test_a_message_that_cannot_be_built_is_failed_and_does_not_block_the_channel(
        sqlite_url: str, fake) -> None:
    from agent.slack.client import build_web_client
    from agent.slack.notifier import SlackNotifier
    from agent.slack.outbox import deliver_outbox
    from tests.fixtures.slack import SLACK_TEST_TOKEN
    from tools.ledger.db import make_engine, migrate
    from tools.ledger.outbox import OutboxMessage, enqueue

    engine = make_engine(sqlite_url)
    migrate(engine)
    good = Summary(kind="daily", window_start="2026-11-29T09:00:00Z", window_end="2026-11-30T09:00:00Z",
                   timezone="UTC", pixels=[_line("p1", "healthy")])
    with Session(engine) as session:
        enqueue(session, dedupe_key="digest:C1:broken", channel="C1", kind="digest",
                payload={"summary": {"pixels": "not a list"}, "parent_key": None}, at=H)
        enqueue(session, dedupe_key="digest:C1:good", channel="C1", kind="digest",
                payload={"summary": good.to_json(), "parent_key": None}, at=H + timedelta(hours=1))
        session.commit()
    notifier = SlackNotifier(build_web_client(token=SLACK_TEST_TOKEN, base_url=fake.url))
    report = deliver_outbox(lambda: Session(engine, expire_on_commit=False), notifier, now=H + timedelta(hours=1))
    assert (report.sent, report.failed) == (1, 1)
    with Session(engine) as session:
        statuses = {row.dedupe_key: (row.status, row.last_error) for row in session.query(OutboxMessage)}
    assert statuses == {"digest:C1:broken": ("failed", "build: TypeError"), "digest:C1:good": ("sent", None)}
    engine.dispose()


def test_the_audit_keeps_its_not_judged_series_for_the_summary(template_world_services) -> None:
    services, world = template_world_services
    from sqlalchemy import select

    from tools.ledger.models import Audit

    state = services.audit_pixel(world.pixel, world.scenario.audit_at)
    with services.wiring.session() as session:
        stored = session.scalars(select(Audit).where(Audit.id == state["audit_id"])).one()
    assert stored.result["not_judged"] == state["report"]["pixels"][0]["not_judged"]
    assert stored.result["not_judged"], "the small scenario has series too thin to judge"
    assert not_judged_of(stored.result, world.pixel.id) == stored.result["not_judged"]


# --- accepted-but-useless payloads ------------------------------------------------------------------

EXAMPLE = "AddToCart event_id ev-1***(19) at 2026-11-30T15:07Z: test_event_code TE***(8)"


def _payload_finding(pixel_id: str, code: str, severity: str, summary: str, count: int, events: int,
                     at: datetime, example: str | None = None) -> Finding:
    return Finding(id=f"f-{pixel_id}-{code}-{at:%H}", pixel_id=pixel_id, check="payload", code=code,
                   severity=severity, summary=summary, metrics={"count": count, "events": events},  # type: ignore[arg-type]
                   evidence=["by event: ...", *([f"example: {example}"] if example else []), "repair: ..."],
                   window_start=at, window_end=at + timedelta(hours=1), fingerprint=code)


def test_payload_findings_reach_the_summary_with_counts_and_masked_examples(ledger_engine: Engine) -> None:
    """Most payload findings open no incident, so the summary is where the channel hears of them: each
    code once (as the window's latest audit had it), warnings first, a standing (info) one too, which
    also keeps its pixel out of the folded healthy line."""
    end = H + timedelta(hours=1)
    test_code = "{} of {} server events in 2026-11-30T15:00:00Z (100%) carry a test_event_code: Meta files them ..."
    currency = "4 of 40 Purchase events in 2026-11-30T15:00:00Z (10%) have no currency ..."
    with Session(ledger_engine) as session:
        for pixel_id in ("p-shop", "p-standing", *(f"p-quiet{n}" for n in range(4))):
            _counts(session, pixel_id, [H - 2 * WEEK, H - WEEK, H], 3)
        save_audit(session, pixel_id="p-shop", window_start=H - timedelta(hours=1), window_end=H, at=H, findings=[
            _payload_finding("p-shop", "payload.test_event_code", "warning", test_code.format(10, 10), 10, 10,
                             H - timedelta(hours=1))])
        save_audit(session, pixel_id="p-shop", window_start=H, window_end=end, at=end, findings=[
            _payload_finding("p-shop", "payload.purchase_no_currency", "info", currency, 4, 40, H),
            _payload_finding("p-shop", "payload.test_event_code", "warning", test_code.format(139, 139), 139, 139, H,
                             EXAMPLE),
            Finding(id="f-parity", pixel_id="p-shop", check="parity", code="parity.server_below_browser",
                    severity="warning", summary="...", window_start=H, window_end=end, fingerprint="x")])
        save_audit(session, pixel_id="p-standing", window_start=H, window_end=end, at=end, findings=[
            _payload_finding("p-standing", "payload.purchase_no_currency", "info", currency, 4, 40, H)])
        for n in range(4):
            save_audit(session, pixel_id=f"p-quiet{n}", window_start=H, window_end=end, at=end, findings=[])
        session.commit()
        pixels = [PixelConfig(id=p) for p in ("p-shop", "p-standing", *(f"p-quiet{n}" for n in range(4)))]
        hourly = build_summary(session, pixels=pixels, start=H, end=end)
        daily = build_summary(session, pixels=pixels[:1], start=H - timedelta(hours=23), end=end)
    shop = next(p for p in hourly.pixels if p.pixel_id == "p-shop")
    assert [(n.code, n.severity, n.count, n.events) for n in shop.payload] == [
        ("payload.test_event_code", "warning", 139, 139), ("payload.purchase_no_currency", "info", 4, 40)]
    assert shop.payload[0].line == f"payload.test_event_code (warning): 139 of 139 server events (100%); e.g. {EXAMPLE}"
    # The day's digest takes each code from its latest audit.
    assert [(n.code, n.count) for n in daily.pixels[0].payload] == [("payload.test_event_code", 139),
                                                                     ("payload.purchase_no_currency", 4)]
    text = render_text(hourly)
    assert f"  accepted but useless: {shop.payload[0].line}" in text
    assert "[healthy] p-standing" in text  # shown on its own, with its standing finding
    assert "  accepted but useless: payload.purchase_no_currency (info): 4 of 40 Purchase events (10%)" in text
    assert "[healthy] 4 pixels: p-quiet0, p-quiet1, p-quiet2, p-quiet3" in text
    blocks = json.dumps(summary_blocks(hourly), ensure_ascii=False)
    assert "Accepted but useless:" in blocks and "test_event_code TE***(8)" in blocks
    assert "parity" not in blocks
    assert Summary.from_json(json.loads(json.dumps(hourly.to_json()))) == hourly


def test_many_payload_findings_stay_within_slacks_section_limit() -> None:
    from agent.slack.blocks import SECTION_LIMIT
    from agent.summary.model import PayloadNote

    notes = [PayloadNote(code=f"payload.kind{k}", severity="warning", count=9, events=10, what="server events",
                         example="x" * 300) for k in range(6)]
    lines = [_line(f"p{n}", "warning", payload=notes) for n in range(8)]
    summary = Summary(kind="hourly", window_start="2026-11-30T15:00:00Z", window_end="2026-11-30T16:00:00Z",
                      timezone="UTC", pixels=lines)
    sections = [b["text"]["text"] for b in summary_blocks(summary) if b["type"] == "section"]
    assert all(len(text) <= SECTION_LIMIT and not text.endswith("…") for text in sections)
    assert sum(text.count("*warning*") for text in sections) == 8  # every pixel, none clipped away
    assert all(text.count("and 3 more: `/capi audit` lists every finding") >= 1 for text in sections)
