"""Root causes on the way to Meta: the shop's events exist, their delivery goes wrong."""

from __future__ import annotations

from datetime import timedelta

from tools.synth.injection import Injection, InjectionContext, fail_requests, first_attempt_at, touches
from tools.synth.meta_state import SIM_READ_TOKEN
from tools.synth.records import Attempt
from tools.synth.traffic import ShopTraffic, new_fbtrace_id, requests_of

RATE_LIMIT_SUBCODES: dict[int, int | None] = {4: None, 17: 2446079, 613: 1487742, 80004: 2446079}


def access_token_invalid(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    failing = [
        group
        for group in requests_of(traffic.server).values()
        if (at := first_attempt_at(group)) is not None
        and inj.active(at)
        and any(inj.covers(r.name) for r in group)
        and ctx.rng.random() < inj.share()
    ]
    fail_requests(failing, ctx, 190, 463)
    token = ctx.config.access_token
    if token in ctx.valid_tokens:
        ctx.valid_tokens.remove(token)
    ctx.expired_tokens.append(token)
    if inj.params.get("reads_expired"):
        ctx.valid_tokens[:] = [t for t in ctx.valid_tokens if t != SIM_READ_TOKEN]
        ctx.expired_tokens.append(SIM_READ_TOKEN)


def missed_batch(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # Recorded by the ledger, never sent: no delivery object at all.
    for record in traffic.server:
        if touches(inj, ctx, record):
            record.attempts = None


def late_delivery(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # The sender's queue holds events for hours; until sent they are pending with no attempt.
    delay_hours = 3.0 if inj.magnitude is None else inj.magnitude
    for group in requests_of(traffic.server).values():
        first = group[0]
        if not (inj.active(first.true_time) and any(inj.covers(r.name) for r in group)):
            continue
        latest = max(record.true_time for record in group)
        at = latest + timedelta(seconds=delay_hours * 3600 * ctx.rng.uniform(0.8, 1.4))
        attempt = Attempt(at, fbtrace_id=new_fbtrace_id(ctx.rng), events_received=len(group))
        for record in group:
            record.attempts = [attempt]


def malformed_parameter(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    # A deploy builds fbc with seconds instead of milliseconds; Meta rejects the whole request.
    bad_requests: set[str] = set()
    for record in traffic.server:
        fbc = record.event["user_data"].get("fbc")
        if fbc and touches(inj, ctx, record):
            prefix, sub, created_ms, fbclid = fbc.split(".", 3)
            record.event["user_data"]["fbc"] = f"{prefix}.{sub}.{int(created_ms) // 1000}.{fbclid}"
            bad_requests.add(record.request_id)
    groups = requests_of(traffic.server)
    fail_requests([groups[rid] for rid in groups if rid in bad_requests], ctx, 100, 2804001)


def rate_limited(inj: Injection, traffic: ShopTraffic, ctx: InjectionContext) -> None:
    """Throttled attempts fail and are retried with exponential backoff until the limit clears."""
    code = int(inj.params.get("code", 17))
    if code not in RATE_LIMIT_SUBCODES:
        raise ValueError(f"rate_limited code {code} is not one of {sorted(RATE_LIMIT_SUBCODES)}")
    throttle = 0.9 if inj.magnitude is None else min(1.0, inj.magnitude)
    for group in requests_of(traffic.server).values():
        at = first_attempt_at(group)
        if at is None or not inj.active(at) or not any(inj.covers(r.name) for r in group):
            continue
        attempts: list[Attempt] = []
        for retry in range(12):
            if inj.active(at) and ctx.rng.random() < throttle:
                attempts.append(Attempt(at, 400, code, RATE_LIMIT_SUBCODES[code], new_fbtrace_id(ctx.rng), 0))
                at += timedelta(seconds=min(60 * 2**retry, 1800) * ctx.rng.uniform(0.8, 1.2))
                continue
            attempts.append(Attempt(at, fbtrace_id=new_fbtrace_id(ctx.rng), events_received=len(group)))
            break
        for record in group:
            record.attempts = list(attempts)
