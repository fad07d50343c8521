"""Hashing on real ledger rollups: what real shops send (a one-country shop's hashed country, two
genders, many "john"s, a steady share of guest placeholders) stays quiet; a deploy that starts
sending raw e-mails is caught in its first audited hour."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from tests.fixtures.db import PIXEL, sha
from tools.checks.hashing import check_hashing
from tools.checks.types import AuditInputs
from tools.ledger.db import make_engine, migrate
from tools.ledger.inputs import load_ledger_inputs
from tools.ledger.store import record_events
from tools.timeutil import HOUR, to_unix

END = datetime(2026, 11, 24, 15, tzinfo=UTC)
DAYS = 4
FIRST_NAMES = ["john"] * 6 + ["mary", "james", "linda", "robert", "susan", "michael", "karen"]


def _user(rng: random.Random, raw_email: bool) -> dict[str, Any]:
    person = rng.randrange(100_000)
    email = f"shopper{person}@example.com"
    user: dict[str, Any] = {
        "em": email if raw_email else sha(email),
        "fn": sha(rng.choice(FIRST_NAMES)), "ge": sha(rng.choice("mf")), "country": sha("us"),
        "st": sha(rng.choice(["ca", "ny", "tx"])), "client_ip_address": "203.0.113.9",
        "client_user_agent": "Mozilla/5.0", "fbp": f"fb.1.1763600000000.{person}",
    }
    if rng.random() < 0.04:  # guests: an empty e-mail hashed anyway (standing, ~4 %)
        user["em"] = sha("")
    return user


def _ledger(engine: Engine, *, raw_from: datetime | None) -> None:
    rng = random.Random(5)
    with Session(engine) as session:
        hour = END - DAYS * 24 * HOUR
        while hour < END:
            events = [{"event_name": "ViewContent", "event_time": to_unix(hour + timedelta(seconds=73 * i)),
                       "event_id": f"{to_unix(hour)}-{i}",
                       "user_data": _user(rng, raw_from is not None and hour >= raw_from)}
                      for i in range(30)]
            record_events(session, pixel_id=PIXEL, events=events, received_at=hour + HOUR)
            hour += HOUR
        session.commit()


def _inputs(engine: Engine) -> AuditInputs:
    history_start = END - 28 * 24 * HOUR
    with Session(engine) as session:
        ledger = load_ledger_inputs(session, pixel_id=PIXEL, history_start=history_start, window_end=END)
    return AuditInputs(pixel_id=PIXEL, window_start=END - HOUR, window_end=END, history_start=history_start,
                       event_hours=ledger.event_hours, delivery_hours=ledger.delivery_hours)


def test_what_real_shops_send_is_quiet(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    _ledger(engine, raw_from=None)
    findings = check_hashing(_inputs(engine))
    assert [f for f in findings if f.severity != "info"] == []
    assert {(f.code, f.metrics["field"]) for f in findings} == {("hashing.placeholder", "em")}
    engine.dispose()


def test_a_deploy_sending_raw_emails_is_caught_in_its_first_hour(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    _ledger(engine, raw_from=END - HOUR)
    (finding,) = [f for f in check_hashing(_inputs(engine)) if f.severity != "info"]
    assert (finding.code, finding.severity, finding.metrics["fields"]) == ("hashing.raw_pii", "critical", "em")
    engine.dispose()
