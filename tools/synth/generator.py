"""Write a synthetic shop's three files: events.jsonl (the ledger's ingest lines), orders.jsonl (the
shop's source of truth, each order with its customer's hashed keys when its Purchase had them) and
meta_state.json (the Graph API simulator's state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tools.synth.inject import Injection, apply_injections
from tools.synth.meta_state import build_meta_state
from tools.synth.records import ingest_line, order_line
from tools.synth.shop import ShopConfig
from tools.synth.traffic import cut_at, simulate_traffic
from tools.timeutil import as_utc

EVENTS_FILE = "events.jsonl"
ORDERS_FILE = "orders.jsonl"
META_STATE_FILE = "meta_state.json"


@dataclass(frozen=True)
class GeneratedFiles:
    """Where the files went and what is in them."""

    events_path: Path
    orders_path: Path
    meta_state_path: Path
    pixel_id: str
    now: datetime
    server_events: int  # lines in events.jsonl
    delivered_events: int  # of which Meta accepted by ``now``
    browser_events: int
    orders: int


_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def _dump_line(obj: object) -> str:
    return _LINE_ENCODER.encode(obj) + "\n"


def generate(
    config: ShopConfig,
    *,
    start: datetime,
    end: datetime,
    seed: int,
    injections: Sequence[Injection] = (),
    out_dir: Path,
    now: datetime | None = None,
) -> GeneratedFiles:
    """Generate traffic for [start, end), apply the injections, and write the three files as seen at
    ``now`` (default ``end``). The same arguments always give byte-identical files; traffic before an
    injection's onset is identical with and without it.
    """
    start, end = as_utc(start), as_utc(end)
    now = as_utc(now) if now is not None else end
    if end <= start:
        raise ValueError("end must be after start")
    traffic = simulate_traffic(config, start=start, end=min(end, now), seed=seed)
    tokens = apply_injections(list(injections), traffic, config=config, now=now, seed=seed)
    cut_at(traffic, now)
    # Stable sort: lines in the order the ledger received them.
    traffic.server.sort(key=lambda record: record.received_at)

    out_dir.mkdir(parents=True, exist_ok=True)
    events_path, orders_path = out_dir / EVENTS_FILE, out_dir / ORDERS_FILE
    meta_state_path = out_dir / META_STATE_FILE
    with events_path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(_dump_line(ingest_line(config.pixel_id, record)) for record in traffic.server)
    with orders_path.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(_dump_line(order_line(config.pixel_id, order)) for order in traffic.orders)
    state = build_meta_state(
        pixel_id=config.pixel_id,
        now=now,
        server=traffic.server,
        browser=traffic.browser,
        valid_tokens=tokens.valid_tokens,
        expired_tokens=tokens.expired_tokens,
    )
    meta_state_path.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8", newline="\n")
    return GeneratedFiles(
        events_path=events_path,
        orders_path=orders_path,
        meta_state_path=meta_state_path,
        pixel_id=config.pixel_id,
        now=now,
        server_events=len(traffic.server),
        delivered_events=sum(1 for record in traffic.server if record.delivered),
        browser_events=len(traffic.browser),
        orders=len(traffic.orders),
    )
