"""Why browser and server copies do not deduplicate (``dedupe.reasons``): each reason with its share,
the main one's fix in words, and what capi-agent cannot see said plainly. The server side comes from
the ledger's payload rollups, the browser side from Meta's counts and dedupe feedback only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from tests.fixtures.db import PIXEL, event_line, write_jsonl
from tools.checks.dedupe_reasons import check_dedupe_reasons
from tools.checks.payload_quality import PayloadHour
from tools.checks.types import (
    AuditInputs,
    DedupeKeyFeedback,
    EventQuality,
    MetaHourlyCount,
    QualitySnapshot,
)
from tools.diagnosis.rules import diagnose
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.payload import load_payload_hours

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _meta(browser: dict[str, int], server: dict[str, int], hours: int = 24) -> tuple[MetaHourlyCount, ...]:
    """Per-hour counts for the last ``hours`` hours, the totals spread evenly."""
    out = []
    for source, totals in (("browser", browser), ("server", server)):
        for name, total in totals.items():
            for h in range(hours):
                out.append(MetaHourlyCount(hour=END - (h + 1) * HOUR, event_name=name, source=source,  # type: ignore[arg-type]
                                           count=total // hours + (1 if h < total % hours else 0)))
    return tuple(out)


def _quality(name: str, browser_pct: float, server_pct: float = 100.0) -> QualitySnapshot:
    feedback = DedupeKeyFeedback(dedupe_key="event_id", browser_pct=browser_pct, server_pct=server_pct,
                                 overall_browser_coverage_pct=min(browser_pct, server_pct))
    return QualitySnapshot(fetched_at=END, events=(EventQuality(event_name=name, composite_score=8.0,
                                                                dedupe_key_feedback=(feedback,)),))


def _server(name: str, *, events: int = 40, shapes: dict[str, int] | None = None, late_in: int = 0,
            with_id: int | None = None, idm: int = 0, hours: int = 4) -> tuple[PayloadHour, ...]:
    """The server side over the last ``hours`` hours (totals in the newest hour, empty ones before);
    ``late_in`` copies of older events arrived in the newest hour more than 48 h after their event_time."""
    with_id = events if with_id is None else with_id
    newest = PayloadHour(hour=END - HOUR, event_name=name, events=events,
                         counts={"late_in": late_in, "idf": with_id, "idm": idm},
                         id_shapes=shapes if shapes is not None else {"a-9": with_id})
    return (newest, *(PayloadHour(hour=END - (h + 1) * HOUR, event_name=name, events=0) for h in range(1, hours)))


def _inputs(**kw: Any) -> AuditInputs:
    return AuditInputs(pixel_id=PIXEL, window_start=END - HOUR, window_end=END, history_start=END - timedelta(weeks=4),
                       event_hours=(), delivery_hours=(), **kw)


def test_browser_copies_without_event_id_are_a_reason_with_their_share() -> None:
    inputs = _inputs(meta_counts=_meta({"Purchase": 100}, {"Purchase": 100}), quality=_quality("Purchase", 30.0),
                     payload_hours=_server("Purchase"))
    [finding] = check_dedupe_reasons(inputs)
    assert (finding.code, finding.event_name, finding.severity) == ("dedupe.reasons", "Purchase", "warning")
    assert finding.metrics["main_reason"] == "browser_no_event_id"
    assert finding.metrics["share_browser_no_event_id"] == 0.7 and "share_id_format" not in finding.metrics
    assert "eventID" in str(finding.metrics["fix"]) and "eventID" in finding.summary
    assert any("70 of 100" in line for line in finding.evidence)


def test_a_name_that_differs_only_in_case_is_a_name_mismatch() -> None:
    inputs = _inputs(meta_counts=_meta({"Purchase": 60}, {"purchase": 58}), payload_hours=_server("purchase"))
    [finding] = check_dedupe_reasons(inputs)
    assert finding.event_name == "Purchase" and finding.metrics["main_reason"] == "name_mismatch"
    assert finding.metrics["share_name_mismatch"] == 1.0
    assert any("the server sends purchase (58) and no Purchase" in line for line in finding.evidence)


def test_a_known_alias_is_a_name_mismatch_too() -> None:
    inputs = _inputs(meta_counts=_meta({"Purchase": 60}, {"Order Completed": 60}))
    [finding] = check_dedupe_reasons(inputs)
    assert finding.metrics["main_reason"] == "name_mismatch"


def test_server_copies_later_than_48_hours_and_without_id_are_counted_from_the_ledger() -> None:
    inputs = _inputs(meta_counts=_meta({"Lead": 50}, {"Lead": 50}),
                     payload_hours=_server("Lead", events=50, late_in=75, with_id=35, shapes={"a-x": 35}))
    [finding] = check_dedupe_reasons(inputs)
    assert finding.metrics["main_reason"] == "server_late"
    # 75 late copies of the 125 that arrived; 15 of the hours' own 50 without an id.
    assert (finding.metrics["share_server_late"], finding.metrics["share_server_no_event_id"]) == (0.6, 0.3)
    # The breakdown lists every reason, largest share first.
    first = finding.evidence[0]
    assert first.startswith("server copy arrived more than 48 hours") and "75 of 125" in first
    assert finding.evidence[1].startswith("server copies without event_id")


def test_a_channel_prefix_is_an_inferred_id_format_difference_and_says_what_is_not_seen() -> None:
    inputs = _inputs(meta_counts=_meta({"AddToCart": 80}, {"AddToCart": 80}), quality=_quality("AddToCart", 100.0),
                     payload_hours=_server("AddToCart", shapes={"srv_9": 30, "a-9": 10}))
    [finding] = check_dedupe_reasons(inputs)
    assert finding.metrics["main_reason"] == "id_format" and finding.metrics["share_id_format"] == 0.75
    assert "(inferred)" in finding.summary and "prefix" in str(finding.metrics["fix"])
    assert any("not visible to capi-agent" in line for line in finding.evidence)
    assert any("srv_9 30" in line for line in finding.evidence)


def test_pairs_that_can_deduplicate_raise_nothing() -> None:
    inputs = _inputs(meta_counts=_meta({"Purchase": 100, "PageView": 500}, {"Purchase": 90, "PageView": 450}),
                     quality=_quality("Purchase", 98.0),
                     payload_hours=(*_server("Purchase", shapes={"a-9": 40}, idm=40), *_server("PageView")))
    assert check_dedupe_reasons(inputs) == []
    # Without Meta's counts the browser side is unknown: nothing is said.
    assert check_dedupe_reasons(_inputs(payload_hours=_server("Purchase", late_in=40))) == []
    # A browser stream too small to judge.
    assert check_dedupe_reasons(_inputs(meta_counts=_meta({"Purchase": 5}, {"purchase": 5}))) == []


def test_the_diagnosis_names_broken_deduplication() -> None:
    inputs = _inputs(meta_counts=_meta({"Purchase": 100}, {"Purchase": 100}),
                     payload_hours=_server("Purchase", shapes={"9-server": 40}))
    findings = check_dedupe_reasons(inputs)
    [incident] = diagnose(findings, inputs)
    assert incident.root_cause == "dedup_broken"


def test_event_id_shapes_come_from_ingest(ledger_engine: Engine, tmp_path: Path) -> None:
    at = END - 30 * 60 * timedelta(seconds=1)
    lines = [event_line(event_time=at + timedelta(seconds=i), name="Purchase", event_id=f"srv_{1000 + i}",
                        custom_data={"currency": "USD", "value": 10, "order_id": str(1000 + i)}) for i in range(24)]
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "e.jsonl", lines))
    with Session(ledger_engine) as session:
        hours = load_payload_hours(session, pixel_id=PIXEL, window_end=END)
    [row] = hours
    assert row.id_shapes == {"srv_9": 24} and row.counts["idm"] == 24
    [finding] = check_dedupe_reasons(_inputs(meta_counts=_meta({"Purchase": 30}, {"Purchase": 24}),
                                             payload_hours=hours))
    assert finding.metrics["share_id_format"] == 1.0
    assert any("24 of 24 server Purchase events carry an event_id other than their order id" in line
               for line in finding.evidence)


def test_copies_later_than_48_hours_are_counted_in_the_hour_they_arrived(ledger_engine: Engine,
                                                                        tmp_path: Path) -> None:
    """Through ingest: a late copy's own event_time hour is older than the 48 hours the check reads, so
    only its arrival hour can show it (the rollup's ``late_in``)."""
    at = END - 30 * 60 * timedelta(seconds=1)
    on_time = [event_line(event_time=at + timedelta(seconds=i), name="Purchase", event_id=f"{2000 + i}",
                          received_at=at + timedelta(seconds=i + 5),
                          custom_data={"currency": "USD", "value": 10, "order_id": str(2000 + i)}) for i in range(12)]
    late = [event_line(event_time=at - timedelta(hours=60, seconds=i), name="Purchase", event_id=f"{3000 + i}",
                       received_at=at + timedelta(seconds=i),
                       custom_data={"currency": "USD", "value": 10, "order_id": str(3000 + i)}) for i in range(8)]
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(tmp_path / "e.jsonl", on_time + late))
    with Session(ledger_engine) as session:
        hours = load_payload_hours(session, pixel_id=PIXEL, window_end=END)
    newest = next(row for row in hours if row.hour == END - HOUR)
    assert (newest.events, newest.counts["late_in"]) == (12, 8)
    [finding] = check_dedupe_reasons(_inputs(meta_counts=_meta({"Purchase": 30}, {"Purchase": 20}),
                                             payload_hours=hours))
    assert finding.metrics["main_reason"] == "server_late" and finding.metrics["share_server_late"] == 0.4
    assert any("8 of 20 server Purchase copies that arrived in the latest 48 h came more than 48 hours" in line
               for line in finding.evidence)
    # Counted by arrival only: their event_time hour, 60 hours back, holds no late_in.
    assert all(row.counts.get("late_in", 0) == 0 for row in hours if row.hour != END - HOUR)
