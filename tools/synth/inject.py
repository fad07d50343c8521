"""Root-cause injection: each cause of the catalogue rewrites healthy traffic from its onset so that
both the ledger (events.jsonl) and Meta's side (meta_state.json) show its raw signals.

``magnitude`` means, per cause (default in brackets):
share of affected events/requests [1.0] for browser_pixel_down, server_events_down,
access_token_invalid, missed_batch, dedup_broken, hashing_error, match_keys_lost, malformed_parameter,
event_renamed; hours of delay [3] for late_delivery; copies of each event [3] for duplicate_events;
hours of shift [2] for clock_skew; chance an attempt is throttled while the limit holds [0.9] for
rate_limited.

``params`` per cause: dedup_broken ``side`` server|browser|both; hashing_error ``mode``
raw|placeholder|uppercase|must_not_hash and ``fields``; match_keys_lost ``keys``; event_renamed
``from``, ``to``, ``side`` both|server; rate_limited ``code`` 4|17|613|80004; access_token_invalid
``reads_expired`` (the agent's read token expired too); duplicate_events ``new_event_id`` (each copy
under an event_id of its own: the same order sent twice); clock_skew ``direction`` ahead|behind.
Any cause: ``sender`` ``{"before": {...}, "after": {...}}`` (see ``switch_sender``).
missed_batch without ``end`` lasts one hour. ``ramp_hours`` makes an onset gradual: the affected
share grows linearly from 0 to the magnitude over that many hours (causes that drop or alter a share).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from tools.synth import causes_delivery, causes_traffic
from tools.synth.injection import INJECTABLE_CAUSES, Injection, InjectionContext
from tools.synth.meta_state import SIM_READ_TOKEN
from tools.synth.shop import ShopConfig
from tools.synth.traffic import ShopTraffic

__all__ = ["INJECTABLE_CAUSES", "INJECTORS", "Injection", "InjectionContext", "apply_injections"]


INJECTORS: dict[str, Callable[[Injection, ShopTraffic, InjectionContext], None]] = {
    "browser_pixel_down": causes_traffic.browser_pixel_down,
    "server_events_down": causes_traffic.server_events_down,
    "access_token_invalid": causes_delivery.access_token_invalid,
    "missed_batch": causes_delivery.missed_batch,
    "late_delivery": causes_delivery.late_delivery,
    "dedup_broken": causes_traffic.dedup_broken,
    "hashing_error": causes_traffic.hashing_error,
    "match_keys_lost": causes_traffic.match_keys_lost,
    "malformed_parameter": causes_delivery.malformed_parameter,
    "duplicate_events": causes_traffic.duplicate_events,
    "event_renamed": causes_traffic.event_renamed,
    "clock_skew": causes_traffic.clock_skew,
    "rate_limited": causes_delivery.rate_limited,
}


def apply_injections(
    injections: list[Injection],
    traffic: ShopTraffic,
    *,
    config: ShopConfig,
    now: datetime,
    seed: int,
) -> InjectionContext:
    """Apply each injection in order (each with its own seeded randomness); returns the token state."""
    ctx = InjectionContext(
        config=config,
        now=now,
        rng=random.Random(),
        valid_tokens=[SIM_READ_TOKEN, config.access_token],
        expired_tokens=[],
    )
    for index, injection in enumerate(injections):
        ctx.rng = random.Random(f"capi-synth:{seed}:inject:{index}:{injection.cause}")
        INJECTORS[injection.cause](injection, traffic, ctx)
        if injection.params.get("sender"):
            switch_sender(injection, traffic)
    return ctx


def switch_sender(injection: Injection, traffic: ShopTraffic) -> None:
    """``params.sender = {"before": {...}, "after": {...}}`` (ingest ``sender`` objects): the shop's
    server events name their sender, and the cause comes with a visible change of it (a plugin update
    that breaks Purchase): lines received from the onset carry ``after``, earlier ones ``before``."""
    change = injection.params["sender"]
    if not isinstance(change, dict) or not isinstance(change.get("before"), dict) or not isinstance(
            change.get("after"), dict):
        raise ValueError("params.sender must be {\"before\": {...}, \"after\": {...}}")
    for record in traffic.server:
        record.sender = dict(change["after"] if record.received_at >= injection.onset else change["before"])
