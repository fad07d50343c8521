"""What recording the sender costs: ``record_request_sender`` per relay request (its own transaction
here, so the figure is an upper bound of what it adds to the relay's record transaction), and
``record_import_senders`` per imported line, on a SQLite ledger. Prints JSON, then a table.

Run: ``.venv/bin/python -m evals.perf.bench_senders [REQUESTS] [LINES]`` (default 2000 50000).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from sqlalchemy import Engine
from sqlmodel import Session

from tools.ledger.db import make_engine, migrate
from tools.senders.envelope import SenderEvent
from tools.senders.fingerprint import sender_info
from tools.senders.track import record_import_senders, record_request_sender

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PIXEL = "1234567890"
EVENT = {"event_name": "Purchase", "event_time": 1763640000, "action_source": "website",
         "event_source_url": "https://shop.example/thanks",
         "user_data": {"em": ["a" * 64], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                       "fbp": "fb.1.1.1"},
         "custom_data": {"currency": "USD", "value": 1.0}}


def bench_requests(count: int, engine: Engine) -> list[float]:
    """Seconds per request (3 events each, a new hour every 60 requests, a version change midway)."""
    timings = []
    for i in range(count):
        version = "3.2.1" if i < count // 2 else "3.3.0"
        at = AT + timedelta(minutes=i)
        started = time.perf_counter()
        with Session(engine) as session:
            record_request_sender(session, pixel_id=PIXEL, user_agent="fbbizsdk-php-v17.0.0",
                                  params={"partner_agent": f"woo-capi-{version}"}, events=[EVENT] * 3, at=at)
            session.commit()
        timings.append(time.perf_counter() - started)
    return timings


def bench_import(lines: int, engine: Engine) -> float:
    """Seconds for ``lines`` import lines (one a minute, batches of 5000)."""
    info = sender_info(user_agent="fbbizsdk-php-v17.0.0", partner_agent="woo-capi-3.2.1")
    items = [SenderEvent(pixel_id="2", received_at=AT + timedelta(minutes=i), event=EVENT, sender=info)
             for i in range(lines)]
    started = time.perf_counter()
    with Session(engine) as session:
        for begin in range(0, lines, 5000):
            batch = items[begin:begin + 5000]
            record_import_senders(session, batch, list(range(begin, begin + len(batch))))
            session.commit()
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    requests = int(argv[0]) if argv else 2000
    lines = int(argv[1]) if len(argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        per_request = bench_requests(requests, engine)
        import_s = bench_import(lines, engine)
        engine.dispose()
    result = {"requests": requests, "request_median_ms": round(median(per_request) * 1000, 3),
              "request_p95_ms": round(sorted(per_request)[int(0.95 * len(per_request))] * 1000, 3),
              "import_lines": lines, "import_s": round(import_s, 3),
              "import_lines_per_s": round(lines / import_s) if import_s else None}
    print(json.dumps(result))
    print(f"{'what':<34}{'figure':>12}")
    print(f"{'relay request, median (ms)':<34}{result['request_median_ms']:>12}")
    print(f"{'relay request, p95 (ms)':<34}{result['request_p95_ms']:>12}")
    print(f"{'import, lines/s (senders only)':<34}{result['import_lines_per_s']:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
