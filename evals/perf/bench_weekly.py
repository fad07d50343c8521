"""Cost of the weekly report: reading a week from the ledger per pixel, drawing the picture, the payload.

Seeds ``--pixels`` pixels (SQLite) the way the hourly audits leave them: every hour of two weeks a
stats snapshot of Meta's last 25 hours (``--events`` event names, browser and server), a Dataset
Quality read and an audit; then times ``build_weekly`` over them. The picture and the outbox payload
are timed on a synthetic report of ``--report-pixels`` pixels (1000 by default), since the picture
never has more than 24 panels whatever the number of pixels. Prints a table and one JSON object.

Run: ``.venv/bin/python -m evals.perf.bench_weekly [--pixels 20] [--events 3] [--report-pixels 1000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from agent.summary.weekly import DayPoint, PixelWeek, WeeklyReport, build_weekly
from agent.summary.weekly_chart import render_png
from tools.checks.types import EventQuality, MetaHourlyCount, QualitySnapshot
from tools.ledger.db import make_engine, migrate
from tools.ledger.incidents import save_audit
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import save_meta_counts, save_quality_snapshot
from tools.timeutil import HOUR

END = datetime(2026, 11, 30, 9, tzinfo=UTC)
SNAPSHOT_HOURS = 25  # an hourly audit reads the last day again plus the new hour


def seed(session: Session, pixel_ids: list[str], events: int) -> None:
    names = [f"Event{n}" for n in range(events)]
    for pixel_id in pixel_ids:
        for step in range(14 * 24, 0, -1):
            end = END - (step - 1) * HOUR
            hours = [end - n * HOUR for n in range(SNAPSHOT_HOURS, 0, -1)]
            counts = [MetaHourlyCount(hour=h, event_name=name, source=source, count=40)
                      for h in hours for name in names for source in ("browser", "server")]
            save_meta_counts(session, pixel_id=pixel_id, counts=counts, fetched_at=end, window_start=hours[0],
                             window_end=end)
            save_quality_snapshot(session, pixel_id=pixel_id, snapshot=QualitySnapshot(fetched_at=end, events=tuple(
                EventQuality(event_name=name, composite_score=6.5, event_coverage_pct=90.0) for name in names)))
            save_audit(session, pixel_id=pixel_id, window_start=end - HOUR, window_end=end, at=end, findings=[])
        session.commit()


def synthetic(n: int) -> WeeklyReport:
    days = [DayPoint(day=f"2026-11-{d}", server=900, browser=1000, ratio=0.9, coverage=90.0,
                     coverage_source="meta", emq=6.5) for d in range(23, 30)]
    return WeeklyReport(week_start="2026-11-23T09:00:00Z", week_end=END.isoformat(), timezone="UTC", pixels=[
        PixelWeek(pixel_id=f"{1000000000 + i}", name=f"Shop {i}", days=days, server=6300, browser=7000, ratio=0.9,
                  coverage=90.0, previous_coverage=91.0, emq=6.5, hours_audited=168, hours_with_incidents=0,
                  hours_failed=0) for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=20)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--report-pixels", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        migrate(engine)
        ids = [f"{1100000000 + n}" for n in range(args.pixels)]
        began = time.perf_counter()
        with Session(engine) as session:
            seed(session, ids, args.events)
        seeded = time.perf_counter() - began
        began = time.perf_counter()
        with Session(engine) as session:
            report = build_weekly(session, pixels=[PixelConfig(id=i) for i in ids], end=END)
        read = time.perf_counter() - began
        engine.dispose()
    assert len(report.pixels) == args.pixels
    big = synthetic(args.report_pixels)
    began = time.perf_counter()
    png = render_png(big)
    drawn = time.perf_counter() - began
    payload = len(json.dumps({"report": big.to_json()}).encode())
    per_pixel_ms = 1000 * read / args.pixels
    result = {"pixels_read": args.pixels, "events": args.events, "seed_s": round(seeded, 1),
              "read_s": round(read, 3), "read_per_pixel_ms": round(per_pixel_ms, 1),
              "read_1000_pixels_s_estimated": round(per_pixel_ms, 1),
              "report_pixels": args.report_pixels, "png_s": round(drawn, 2), "png_bytes": len(png),
              "payload_bytes": payload}
    print(f"{'what':<46} {'value':>12}")
    print(f"{'read a week, per pixel (ms)':<46} {per_pixel_ms:>12.1f}")
    print(f"{'read a week, 1000 pixels (s, linear estimate)':<46} {per_pixel_ms:>12.1f}")
    print(f"{f'picture of {args.report_pixels} pixels (24 panels) (s)':<46} {drawn:>12.2f}")
    print(f"{'picture size (bytes)':<46} {len(png):>12,}")
    print(f"{f'outbox payload, {args.report_pixels} pixels (bytes)':<46} {payload:>12,}")
    print(json.dumps({"python": sys.version.split()[0], **result}))


if __name__ == "__main__":
    main()
