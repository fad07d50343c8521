"""Root causes in what is sent: events missing, renamed, duplicated, mis-dated or carrying bad
match keys (the deliveries themselves succeed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tools.synth.injection import Injection, InjectionContext, touches
from tools.synth.people import raw_email, raw_phone, sha256_hex
from tools.synth.records import Attempt, ServerEvent
from tools.synth.traffic import ShopTraffic, new_fbtrace_id, new_request_id


def browser_pixel_down(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    traffic.browser = [
        hit
        for hit in traffic.browser
        if not (inj.active(hit.time) and inj.covers(hit.event_name) and ctx.rng.random() < inj.share_at(hit.time))
    ]


def server_events_down(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # The shop never produces them: no ledger line, nothing at Meta, no delivery error. Orders stay.
    traffic.server = [record for record in traffic.server if not touches(inj, ctx, record)]


def dedup_broken(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    reason = inj.params.get("reason")
    if reason is not None:
        _dedup_reason(inj, traffic, ctx, str(reason))
        return
    side = inj.params.get("side", "server")
    if side in ("server", "both"):
        for record in traffic.server:
            if touches(inj, ctx, record):
                record.event.pop("event_id", None)
    if side in ("browser", "both"):
        traffic.browser = [
            type(hit)(hit.time, hit.event_name, False)
            if inj.active(hit.time) and inj.covers(hit.event_name)
            else hit
            for hit in traffic.browser
        ]


# dedup_broken ``params.reason``: the server copy keeps an event_id, but not the browser's (the first
# three), or it arrives too late for Meta to merge it with the browser's (``server_late``).
DEDUP_REASONS = ("id_prefix", "id_suffix", "id_padding", "server_late")
# server_late: hours between the event and its server copy (Meta merges the copies within 48 hours only;
# past 7 days it would refuse the copy, which is another finding).
SERVER_LATE_HOURS = (50.0, 96.0)


def _dedup_reason(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext, reason: str) -> None:
    """Why pairs stop deduplicating while both sides still carry an event_id: the server's id gets a
    channel prefix or suffix or zero padding (the Pixel keeps the plain id), or the server copy is
    sent 50-96 hours after the event, dated at the event (a shop that reports a Purchase paid by bank
    transfer or invoice when the payment clears: same event_id, but past Meta's 48 hours)."""
    if reason not in DEDUP_REASONS:
        raise ValueError(f"dedup_broken reason {reason!r} is not one of {list(DEDUP_REASONS)}")
    for record in traffic.server:
        if not touches(inj, ctx, record):
            continue
        event_id = record.event.get("event_id")
        if event_id is None:
            continue
        elif reason == "server_late":
            _send_late(record, ctx)
        elif reason == "id_prefix":
            record.event["event_id"] = f"srv_{event_id}"
        elif reason == "id_suffix":
            record.event["event_id"] = f"{event_id}-server"
        else:
            digits = "".join(ch for ch in str(event_id) if ch.isdigit()) or "1"
            record.event["event_id"] = digits.zfill(12)


def _send_late(record: ServerEvent, ctx: InjectionContext) -> None:
    """The record reaches the ledger (and Meta, in a request of its own) hours after its event_time."""
    delay = timedelta(hours=ctx.rng.uniform(*SERVER_LATE_HOURS))
    record.received_at = record.true_time + delay
    record.request_id, record.batch_size = new_request_id(ctx.rng), 1
    if record.attempts:
        record.attempts = [Attempt(record.received_at + timedelta(seconds=ctx.rng.uniform(1, 30)),
                                   fbtrace_id=new_fbtrace_id(ctx.rng), events_received=1)]


# match_keys_lost ``params.payload``: what else the broken sender does to its events (payload.* findings).
PAYLOAD_DEFECTS = ("constant_ip", "test_event_code", "purchase_no_currency", "purchase_value_text",
                   "no_action_source", "website_no_source_url", "purchase_value_zero", "user_data_not_string")
SERVER_IP = "198.51.100.20"


def _payload_defects(record: ServerEvent, defects: list[str]) -> None:
    event = record.event
    custom = event.get("custom_data")
    for defect in defects:
        if defect == "constant_ip" and "client_ip_address" in event.get("user_data", {}):
            event["user_data"]["client_ip_address"] = SERVER_IP  # the sender's own address, for everyone
        elif defect == "test_event_code":
            event["test_event_code"] = "TEST4821"
        elif defect == "purchase_no_currency" and isinstance(custom, dict):
            custom.pop("currency", None)
        elif defect == "purchase_value_text" and isinstance(custom, dict) and "value" in custom:
            custom["value"] = f"{custom['value']:.2f}" if isinstance(custom["value"], float) else str(custom["value"])
        elif defect == "no_action_source":
            event.pop("action_source", None)
        elif defect == "website_no_source_url":
            event.pop("event_source_url", None)
        elif defect == "purchase_value_zero" and isinstance(custom, dict) and "value" in custom:
            custom["value"] = 0
        elif defect == "user_data_not_string" and record.customer is not None:
            # A login id as a JSON number where Meta wants a string (an id sent as is, never hashed, so
            # the defect is the type alone; a hashed field sent as a number would look like raw data).
            event.setdefault("user_data", {})["fb_login_id"] = 10**15 + record.customer


_HASH_DEFAULT_FIELDS = {
    "raw": ["em", "ph"],
    "placeholder": ["em"],
    "uppercase": ["em", "ph"],
    "must_not_hash": ["client_ip_address"],
}


def hashing_error(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    mode = inj.params.get("mode", "raw")
    if mode not in _HASH_DEFAULT_FIELDS:
        raise ValueError(f"hashing_error mode {mode!r} is not one of {sorted(_HASH_DEFAULT_FIELDS)}")
    fields: list[str] = inj.params.get("fields") or _HASH_DEFAULT_FIELDS[mode]
    for record in traffic.server:
        if not touches(inj, ctx, record):
            continue
        user = record.event["user_data"]
        for name in fields:
            if mode == "raw" and name in user and record.customer is not None:
                # Only the fake example.com / 555-01xx values of this generator ever appear raw.
                raw = {"em": raw_email, "ph": raw_phone}.get(name)
                if raw is not None:
                    user[name] = [raw(record.customer)]
            elif mode == "placeholder" and name not in user:
                user[name] = [sha256_hex("")]  # a guest's empty field hashed anyway
            elif mode == "uppercase" and name in user:
                user[name] = [value.upper() for value in user[name]]
            elif mode == "must_not_hash" and name in user:
                user[name] = sha256_hex(str(user[name]))


def match_keys_lost(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # ``keys: []`` with ``payload``: the keys stay but the sender spoils them (a constant IP).
    keys: list[str] = (inj.params["keys"] if "keys" in inj.params and inj.params.get("payload")
                       else inj.params.get("keys") or [inj.params.get("key", "fbc")])
    defects: list[str] = list(inj.params.get("payload") or [])
    unknown = sorted(set(defects) - set(PAYLOAD_DEFECTS))
    if unknown:
        raise ValueError(f"match_keys_lost payload {unknown} not among {list(PAYLOAD_DEFECTS)}")
    for record in traffic.server:
        if touches(inj, ctx, record):
            for key in keys:
                record.event["user_data"].pop(key, None)
            _payload_defects(record, defects)


def duplicate_events(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # A retry loop resends each event with the same event_id; Meta takes every copy. With
    # ``new_event_id`` the copy gets an event_id of its own (the same order sent twice by two paths).
    copies = max(2, round(3 if inj.magnitude is None else inj.magnitude))
    new_ids = bool(inj.params.get("new_event_id"))
    extra: list[ServerEvent] = []
    for record in traffic.server:
        if not (inj.active(record.true_time) and inj.covers(record.name)):
            continue
        offset = timedelta()
        for _ in range(copies - 1):
            offset += timedelta(seconds=ctx.rng.randint(2, 90))
            first = record.attempts[0] if record.attempts else None
            attempts = (
                None
                if record.attempts is None
                else ([Attempt(first.at + offset, fbtrace_id=new_fbtrace_id(ctx.rng))] if first else [])
            )
            event = _copy_event(record.event)
            if new_ids:
                event["event_id"] = f"dup-{ctx.rng.getrandbits(64):016x}"
            extra.append(
                ServerEvent(
                    true_time=record.true_time,
                    event=event,
                    received_at=record.received_at + offset,
                    request_id=new_request_id(ctx.rng),
                    attempts=attempts,
                    customer=record.customer,
                )
            )
    traffic.server.extend(extra)


def _copy_event(event: dict[str, Any]) -> dict[str, Any]:
    copied = dict(event)
    copied["user_data"] = {k: list(v) if isinstance(v, list) else v for k, v in event["user_data"].items()}
    if "custom_data" in event:
        copied["custom_data"] = dict(event["custom_data"])
    return copied


def event_renamed(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    old = inj.params.get("from") or (inj.events[0] if inj.events else "AddToCart")
    new = inj.params.get("to", "add_to_cart")
    share = inj.share()
    for record in traffic.server:
        if record.name == old and inj.active(record.true_time) and ctx.rng.random() < share:
            record.event["event_name"] = new
    if inj.params.get("side", "both") == "both":
        traffic.browser = [
            type(hit)(hit.time, new, hit.with_event_id)
            if hit.event_name == old and inj.active(hit.time) and ctx.rng.random() < share
            else hit
            for hit in traffic.browser
        ]


def clock_skew(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # ``direction`` ahead (default) or behind: the server's clock runs that many hours fast or slow.
    shift = round((2.0 if inj.magnitude is None else inj.magnitude) * 3600)
    if inj.params.get("direction", "ahead") == "behind":
        shift = -shift
    for record in traffic.server:
        if inj.active(record.true_time) and inj.covers(record.name):
            record.event["event_time"] = int(record.event["event_time"]) + shift
