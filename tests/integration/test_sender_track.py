"""Who sends, over time, in the ledger (SQLite and Postgres): a version change is one event on the
pixel's timeline; two senders that alternate normally, a rollout where two versions alternate, and
keys only some customers have are not changes; a sender taking over is; a key that vanishes is;
import lines carry their sender; nothing but software names and key names is stored."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, text
from sqlalchemy.orm import Session

from tools.ledger.ingest import ingest_events_jsonl
from tools.senders.fingerprint import EventShape, event_shape, sender_info
from tools.senders.models import SenderChangeRow, SenderFingerprint, SenderIdentity
from tools.senders.track import load_sender_changes, load_senders, observe, record_request_sender
from tools.timeutil import UTC, to_iso, to_unix

T0 = datetime(2026, 11, 2, tzinfo=UTC)
PIXEL = "1234567890"
PLUGIN_OLD = sender_info(user_agent="fbbizsdk-php-v17.0.0", partner_agent="woo-capi-3.2.1")
PLUGIN_NEW = sender_info(user_agent="fbbizsdk-php-v17.0.0", partner_agent="woo-capi-3.3.0")
TAG = sender_info(user_agent="gtm-server-side/2.4")
SENDER_TABLES = ("sender_identities", "sender_fingerprints", "sender_changes")


def shape(name: str, keys: set[str]) -> EventShape:
    return EventShape(event_name=name, fields=frozenset({"event_name", "event_time", "custom_data.value"}),
                      match_keys=frozenset(keys))


def purchases(n: int, keys: set[str], rng: random.Random | None = None, optional: str | None = None,
              share: float = 0.0) -> list[EventShape]:
    out = []
    for _ in range(n):
        extra = {optional} if optional and rng is not None and rng.random() < share else set()
        out.append(shape("Purchase", keys | extra))
    return out


def changes(engine: Engine) -> list[tuple[str, str, str, str, str]]:
    with Session(engine) as session:
        found = load_sender_changes(session, pixel_id=PIXEL, since=T0 - timedelta(days=30),
                                    until=T0 + timedelta(days=60))
    return [(to_iso(c.at), c.kind, c.event_name, c.before, c.after) for c in found]


def test_migrated_sender_tables_match_their_models(ledger_engine: Engine) -> None:
    mine = MetaData()
    for model in (SenderIdentity, SenderFingerprint, SenderChangeRow):
        model.__table__.to_metadata(mine)
    with ledger_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "include_name": lambda name, type_, _parent: type_ != "table" or name in SENDER_TABLES})
        assert compare_metadata(context, mine) == []


def test_a_plugin_update_is_one_version_change_and_alternating_senders_are_none(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        for hour in range(72):
            at = T0 + timedelta(hours=hour, minutes=7)
            plugin = PLUGIN_OLD if hour < 50 else PLUGIN_NEW
            observe(session, pixel_id=PIXEL, info=plugin, shapes=purchases(3, {"em", "fbp"}), at=at)
            # A server-side tag sends PageViews beside the plugin every hour: another identity.
            observe(session, pixel_id=PIXEL, info=TAG, shapes=[shape("PageView", {"fbp"})] * 4,
                    at=at + timedelta(minutes=20))
        session.commit()
        senders = load_senders(session, pixel_id=PIXEL)
    assert changes(ledger_engine) == [("2026-11-04T02:07:00Z", "version", "", "woo-capi 3.2.1", "woo-capi 3.3.0")]
    assert [s["label"] for s in senders] == ["gtm-server-side/2.4", "woo-capi 3.3.0", "woo-capi 3.2.1"]
    assert next(s for s in senders if s["label"] == "woo-capi 3.2.1")["events"] == 150


def test_a_rollout_alternating_two_versions_changes_once_and_a_late_rollback_counts(
        ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        for step in range(40):  # two servers, one updated: the versions alternate for 20 hours
            at = T0 + timedelta(minutes=30 * step)
            observe(session, pixel_id=PIXEL, info=PLUGIN_NEW if step % 2 else PLUGIN_OLD,
                    shapes=purchases(2, {"em"}), at=at)
        for step in range(30):  # then only the new version for 30 hours, and a rollback
            observe(session, pixel_id=PIXEL, info=PLUGIN_NEW, shapes=purchases(2, {"em"}),
                    at=T0 + timedelta(hours=20 + step))
        observe(session, pixel_id=PIXEL, info=PLUGIN_OLD, shapes=purchases(2, {"em"}),
                at=T0 + timedelta(hours=51))
        session.commit()
    assert [(c[0], c[3], c[4]) for c in changes(ledger_engine)] == [
        ("2026-11-02T00:30:00Z", "woo-capi 3.2.1", "woo-capi 3.3.0"),
        ("2026-11-04T03:00:00Z", "woo-capi 3.3.0", "woo-capi 3.2.1")]


def test_a_new_sender_taking_most_of_the_traffic_is_a_change_a_small_one_is_not(ledger_engine: Engine) -> None:
    newcomer = sender_info(partner_agent="shopify-capi-bridge-1.0.0")
    side = sender_info(user_agent="zapier-webhooks/1.0")
    with Session(ledger_engine) as session:
        for hour in range(40):
            at = T0 + timedelta(hours=hour)
            observe(session, pixel_id=PIXEL, info=PLUGIN_OLD, shapes=purchases(10 if hour < 30 else 1, {"em"}), at=at)
            # A second sender from the first day, with a few Leads: the pixel's starting set.
            observe(session, pixel_id=PIXEL, info=side, shapes=[shape("Lead", {"em"})], at=at)
            if hour >= 30:
                observe(session, pixel_id=PIXEL, info=newcomer, shapes=purchases(10, {"em"}),
                        at=at + timedelta(minutes=1))
        session.commit()
    takeovers = [c for c in changes(ledger_engine) if c[1] == "sender"]
    assert takeovers == [("2026-11-03T06:01:00Z", "sender", "", "woo-capi 3.2.1", "shopify-capi-bridge 1.0.0")]


def test_a_vanished_match_key_is_a_change_keys_some_customers_lack_are_not(ledger_engine: Engine) -> None:
    rng = random.Random(5)
    with Session(ledger_engine) as session:
        for hour in range(96):
            at = T0 + timedelta(hours=hour, minutes=3)
            keys = {"em", "fbp", "client_ip_address"} if hour < 80 else {"fbp", "client_ip_address"}
            # ph: 40 % of customers; fbc: 30 % of visits came from an ad; 4 to 30 Purchases an hour.
            n = rng.randint(4, 30)
            batch = [shape("Purchase", keys | {k for k, p in (("ph", 0.4), ("fbc", 0.3)) if rng.random() < p})
                     for _ in range(n)]
            observe(session, pixel_id=PIXEL, info=PLUGIN_OLD, shapes=batch, at=at)
        session.commit()
    found = changes(ledger_engine)
    assert [(c[1], c[2], c[3], c[4]) for c in found] == [
        ("match_keys", "Purchase", "client_ip_address, em, fbp", "client_ip_address, fbp")]
    assert "2026-11-05T08:00:00Z" <= found[0][0] <= "2026-11-05T09:00:00Z"


def _line(at: datetime, event_id: str, sender: dict | None, **user_data: object) -> str:
    line: dict = {"pixel_id": PIXEL, "received_at": to_iso(at),
                  "event": {"event_name": "Purchase", "event_time": to_unix(at), "event_id": event_id,
                            "action_source": "website", "user_data": user_data, "custom_data": {"value": 1}}}
    if sender is not None:
        line["sender"] = sender
    return json.dumps(line)


def test_ingest_lines_carry_their_sender_and_a_second_load_adds_nothing(ledger_engine: Engine,
                                                                     tmp_path: Path) -> None:
    lines = []
    for hour in range(30):
        at = T0 + timedelta(hours=hour, minutes=5)
        sender = {"user_agent": "fbbizsdk-php-v17.0.0",
                  "partner_agent": "woo-capi-3.2.1" if hour < 20 else "woo-capi-3.3.0"}
        lines += [_line(at + timedelta(seconds=i), f"o-{hour}-{i}", sender, em="canary.person@example.com")
                  for i in range(3)]
    lines.append(_line(T0, "no-sender", None))
    lines.append(_line(T0, "bad-sender", {"partner_agent": 7}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    first = ingest_events_jsonl(session_or_engine=ledger_engine, path=path, now=T0 + timedelta(days=3))
    assert first.skipped == [(92, "sender.partner_agent must be a string")]
    again = ingest_events_jsonl(session_or_engine=ledger_engine, path=path, now=T0 + timedelta(days=3))
    assert again.loaded == 0
    assert changes(ledger_engine) == [("2026-11-02T20:05:00Z", "version", "", "woo-capi 3.2.1", "woo-capi 3.3.0")]
    with Session(ledger_engine) as session:
        senders = load_senders(session, pixel_id=PIXEL)
    assert sorted((s["label"], s["events"]) for s in senders) == [("woo-capi 3.2.1", 60), ("woo-capi 3.3.0", 30)]
    assert "canary.person" not in _dump(ledger_engine)


def test_a_request_keeps_the_senders_software_never_the_customers_browser_or_the_token(
        ledger_engine: Engine) -> None:
    token = "EAAGcanarytoken" + "Q" * 60
    event = {"event_name": "Purchase", "event_time": to_unix(T0), "action_source": "website",
             "user_data": {"client_user_agent": "Mozilla/5.0 (CanaryPhone)", "em": ["canary.person@example.com"]}}
    with Session(ledger_engine) as session:
        record_request_sender(session, pixel_id=PIXEL, user_agent="fbbizsdk-nodejs-v18.0.1",
                              params={"partner_agent": "shop-capi-2.0.0", "access_token": token},
                              events=[event], at=T0)
        # A request that names no software is not fingerprinted.
        assert record_request_sender(session, pixel_id=PIXEL, user_agent=None, params={}, events=[event],
                                     at=T0) == []
        session.commit()
        [sender] = load_senders(session, pixel_id=PIXEL)
    assert (sender["label"], sender["sdk"], sender["sdk_version"]) == (
        "shop-capi 2.0.0", "facebook-nodejs-business-sdk", "18.0.1")
    dump = _dump(ledger_engine)
    assert "fbbizsdk-nodejs-v18.0.1" in dump and "client_user_agent" in dump
    for canary in ("CanaryPhone", "canary.person", token):
        assert canary not in dump
    assert event_shape(event) is not None


def _dump(engine: Engine) -> str:
    with engine.connect() as connection:
        return "\n".join(repr(tuple(row)) for table in SENDER_TABLES
                         for row in connection.execute(text(f"SELECT * FROM {table}")))


def test_a_new_event_name_is_a_change_a_rare_event_of_the_first_day_is_not(ledger_engine: Engine) -> None:
    with Session(ledger_engine) as session:
        for hour in range(96):
            at = T0 + timedelta(hours=hour, minutes=10)
            name = "Purchase" if hour < 60 else "purchase"  # a plugin update renames the event
            batch = [shape(name, {"em"})] * 5
            if hour % 4 == 1:  # a Lead every four hours from the first day: judged after days, not new
                batch.append(shape("Lead", {"em"}))
            observe(session, pixel_id=PIXEL, info=PLUGIN_OLD, shapes=batch, at=at)
        session.commit()
    assert [(c[0], c[1], c[4]) for c in changes(ledger_engine)] == [
        ("2026-11-04T12:00:00Z", "event_names", "purchase")]
