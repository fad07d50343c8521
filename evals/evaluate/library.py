"""The scenario library: failure families with seeded parameter draws, a realistic healthy world, and
the older hand-specified variants.

The records are generated, not hand-edited: ``python -m evals.evaluate.library [--out DIR]`` writes
them (default ``tools/synth/data/scenarios``) and a second run writes the same bytes. Each record's traffic seed
and pixel id derive from its id, so a record is reproducible on its own too. The 26 hand-written
``*_v1.json`` records are left as they are.

Nothing is kept out because the audit misses it: a variant that fails stays in the library and counts
as a miss in ``capi-agent eval``.

* ``FAMILIES``: each failure family draws ``count`` variants from a seeded ``random.Random`` (onset at
  any hour of the week, nights and weekends included; magnitudes, events, shops, time zones, senders)
  and carries a detection target in hours (``detect_within_hours``), measured from the onset, or from
  the first audited hour when the failure began before the audits.
* ``HEALTHY_FAMILIES``: shops driven by real demand series (NAB, ``tools/synth/data/real_traffic``)
  audited inside NAB's labelled anomaly windows, and demand events (storms, outages, viral spikes,
  holidays, sales), shops from 20 to 50,000 events a day, several time zones, the DST change of the
  baseline weeks; all expected healthy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from evals.evaluate.families import family_records, healthy_records
from tools.synth.scenario import Scenario, default_scenario_dir

# Fifteen days of history before the audited day: enough for the volume check's weekday levels (14
# days) while keeping the library quick to generate and ingest.
HISTORY_DAYS = 15

# The hand-specified variants below: warned within 6 hours of the onset (what the first eval audited).
CLASSIC_TARGET_HOURS = 6.0
FAMILY_PIXEL_BASE = 1100001000
HEALTHY_PIXEL_BASE = 1100005000

# id -> (description, injections, audit_at, expected causes, findings_any, shop overrides)
Spec = tuple[str, list[dict[str, Any]], str, list[str], list[str], dict[str, Any]]


def _inj(cause: str, onset: str, *, end: str | None = None, events: list[str] | None = None,
         magnitude: float | None = None, **params: Any) -> dict[str, Any]:
    return {"cause": cause, "onset": onset, "end": end, "events": events, "magnitude": magnitude,
            "params": params}


def _renamed(onset: str, old: str, new: str, *, side: str) -> dict[str, Any]:
    """An event_renamed injection: its ``from`` parameter is a Python keyword, so not a keyword of _inj."""
    return {**_inj("event_renamed", onset), "params": {"from": old, "to": new, "side": side}}


PROBLEMS: dict[str, Spec] = {
    "browser_pixel_down_partial.v1": (
        "A consent-banner change hides the pixel from 70% of visitors; server side steady",
        [_inj("browser_pixel_down", "2026-11-12T14:00:00Z", magnitude=0.7)], "2026-11-12T19:00:00Z",
        ["browser_pixel_down"], [], {}),
    "browser_pixel_down_purchase_evening.v1": (
        "A thank-you page redesign drops the Purchase pixel tag at the evening peak",
        [_inj("browser_pixel_down", "2026-11-11T18:00:00Z", events=["Purchase"])], "2026-11-11T23:00:00Z",
        ["browser_pixel_down"], [], {}),
    "server_events_down_purchase.v1": (
        "An order webhook is unregistered: server Purchase events stop, the rest carries on",
        [_inj("server_events_down", "2026-11-12T10:00:00Z", events=["Purchase"])], "2026-11-12T16:00:00Z",
        ["server_events_down"], [], {}),
    "server_events_down_total.v1": (
        "The CAPI plugin is disabled during the evening peak: every server event stops",
        [_inj("server_events_down", "2026-11-10T19:00:00Z")], "2026-11-10T23:00:00Z",
        ["server_events_down"], [], {}),
    "access_token_invalid_evening.v1": (
        "The system-user token is revoked on a Tuesday evening; sends fail with code 190",
        [_inj("access_token_invalid", "2026-11-10T20:00:00Z")], "2026-11-10T23:00:00Z",
        ["access_token_invalid"], ["delivery.token_invalid"], {"scale": 0.6}),
    "access_token_invalid_reads.v1": (
        "The shared token expires: sends fail with 190 and the agent's own Graph reads fail too",
        [_inj("access_token_invalid", "2026-11-12T09:00:00Z", reads_expired=True)], "2026-11-12T13:00:00Z",
        ["access_token_invalid"], ["delivery.token_invalid"], {}),
    "missed_batch_night.v1": (
        "The 15-minute batch job misses the 02:00 hour (low night volume)",
        [_inj("missed_batch", "2026-11-12T02:00:00Z", end="2026-11-12T03:00:00Z")], "2026-11-12T03:05:00Z",
        ["missed_batch"], [], {"batch_interval_minutes": 15}),
    "missed_batch_two_hours.v1": (
        "A worker crash leaves two afternoon hours of recorded events unsent",
        [_inj("missed_batch", "2026-11-12T14:00:00Z", end="2026-11-12T16:00:00Z")], "2026-11-12T16:05:00Z",
        ["missed_batch"], [], {"batch_interval_minutes": 15}),
    "late_delivery_six_hours.v1": (
        "A queue backlog delays every server event by about six hours",
        [_inj("late_delivery", "2026-11-12T08:00:00Z", magnitude=6.0)], "2026-11-12T20:00:00Z",
        ["late_delivery"], [], {}),
    "dedup_broken_partial.v1": (
        "A refactor drops event_id from 70% of server events",
        [_inj("dedup_broken", "2026-11-12T10:00:00Z", magnitude=0.7, side="server")], "2026-11-12T18:00:00Z",
        ["dedup_broken"], ["parity.dedup_key_missing"], {}),
    "hashing_error_uppercase.v1": (
        "A new SDK version sends upper-case hex hashes",
        [_inj("hashing_error", "2026-11-12T12:00:00Z", mode="uppercase")], "2026-11-12T18:00:00Z",
        ["hashing_error"], [], {}),
    "hashing_error_must_not_hash.v1": (
        "A developer 'secures' the click id and IP by hashing them",
        [_inj("hashing_error", "2026-11-12T11:00:00Z", mode="must_not_hash")], "2026-11-12T17:00:00Z",
        ["hashing_error"], [], {}),
    "match_keys_lost_fbp_ip.v1": (
        "A proxy change strips the client IP and the _fbp cookie from server events",
        [_inj("match_keys_lost", "2026-11-12T09:00:00Z", keys=["fbp", "client_ip_address"])],
        "2026-11-12T17:00:00Z", ["match_keys_lost"], [], {}),
    "malformed_parameter_partial.v1": (
        "Half the batches carry a truncated fbc and Meta rejects them with 2804001",
        [_inj("malformed_parameter", "2026-11-12T15:00:00Z", magnitude=0.5)], "2026-11-12T19:00:00Z",
        ["malformed_parameter"], ["delivery.rejected"], {}),
    "duplicate_events_purchase_double.v1": (
        "An order webhook registered twice sends every server Purchase twice",
        [_inj("duplicate_events", "2026-11-12T12:00:00Z", events=["Purchase"], magnitude=2.0)],
        "2026-11-12T18:00:00Z", ["duplicate_events"], [], {}),
    "event_renamed_evening.v1": (
        "A tag rename turns AddToCart into 'Add To Cart' on both sides before the evening peak",
        [_renamed("2026-11-12T16:00:00Z", "AddToCart", "Add To Cart", side="both")],
        "2026-11-12T21:00:00Z", ["event_renamed"], [], {}),
    "clock_skew_afternoon.v1": (
        "A server clock runs three hours ahead from mid-afternoon",
        [_inj("clock_skew", "2026-11-12T14:00:00Z", magnitude=3.0)], "2026-11-12T18:00:00Z",
        ["clock_skew"], ["latency.future_time"], {}),
    "rate_limited_613.v1": (
        "A burst of single-event requests hits the 613 call limit",
        [_inj("rate_limited", "2026-11-12T17:00:00Z", code=613)], "2026-11-12T20:00:00Z",
        ["rate_limited"], ["delivery.rate_limited"], {}),
    "two_causes_token_and_fbc.v1": (
        "Two things at once: the send token expires and a consent deploy drops fbc",
        [_inj("access_token_invalid", "2026-11-12T10:00:00Z"),
         _inj("match_keys_lost", "2026-11-12T10:00:00Z", key="fbc")], "2026-11-12T16:00:00Z",
        ["access_token_invalid", "match_keys_lost"], [], {}),
    "two_causes_pixel_and_raw_pii.v1": (
        "Two things at once: the pixel disappears from checkout and emails go out unhashed",
        [_inj("browser_pixel_down", "2026-11-12T12:00:00Z", events=["InitiateCheckout", "Purchase"]),
         _inj("hashing_error", "2026-11-12T12:00:00Z", mode="raw")], "2026-11-12T18:00:00Z",
        ["browser_pixel_down", "hashing_error"], [], {}),
}

# Variants an earlier version kept out of the library because the checks missed them; they count.
PROBLEMS.update({
    "clock_skew_five_hours.v1": (
        "A server in the wrong time zone stamps events five hours ahead",
        [_inj("clock_skew", "2026-11-12T10:00:00Z", magnitude=5.0)], "2026-11-12T14:00:00Z",
        ["clock_skew"], ["latency.future_time"], {}),
    "dedup_broken_browser.v1": (
        "A tag-manager edit stops passing eventID from the pixel",
        [_inj("dedup_broken", "2026-11-12T09:00:00Z", side="browser")], "2026-11-12T17:00:00Z",
        ["dedup_broken"], ["parity.dedup_key_missing"], {}),
    "event_renamed_server_purchase.v1": (
        "A backend release sends 'purchase' instead of 'Purchase' on the server side",
        [_renamed("2026-11-12T09:00:00Z", "Purchase", "purchase", side="server")],
        "2026-11-12T17:00:00Z", ["event_renamed"], [], {}),
    "match_keys_lost_phone.v1": (
        "A checkout redesign stops collecting the phone number for Purchase",
        [_inj("match_keys_lost", "2026-11-12T08:00:00Z", events=["Purchase"], key="ph")], "2026-11-12T20:00:00Z",
        ["match_keys_lost"], [], {}),
    "event_renamed_checkout.v1": (
        "A theme update renames InitiateCheckout to 'initiate_checkout' on both sides",
        [_renamed("2026-11-12T10:00:00Z", "InitiateCheckout", "initiate_checkout", side="both")],
        "2026-11-12T18:00:00Z", ["event_renamed"], [], {}),
})


# id -> (description, audit_at, shop overrides[, timezone[, start, days]])
HEALTHY: dict[str, tuple[Any, ...]] = {
    "healthy_payday.v1": ("Payday: a day-long lift of 60% across every event (a sale, both sides)",
                          "2026-11-13T19:00:00Z", {"sales_spikes": [
                              {"start": "2026-11-12T23:00:00Z", "end": "2026-11-13T23:00:00Z", "multiplier": 1.6}]}),
    "healthy_newsletter_blast.v1": ("A newsletter blast triples traffic for three hours",
                                    "2026-11-12T11:00:00Z", {"sales_spikes": [
                                        {"start": "2026-11-12T09:00:00Z", "end": "2026-11-12T12:00:00Z",
                                         "multiplier": 3.0}]}),
    "healthy_after_sale.v1": ("The first hours after a two-day sale ended: back to normal levels",
                              "2026-11-12T12:00:00Z", {"sales_spikes": [
                                  {"start": "2026-11-10T06:00:00Z", "end": "2026-11-12T06:00:00Z",
                                   "multiplier": 2.0}]}),
    "healthy_noisy_traffic.v1": ("A shop whose hourly traffic is much burstier than average",
                                 "2026-11-12T18:00:00Z", {"dispersion_k": 12.0}),
    "healthy_heavy_adblock.v1": ("A tech-savvy audience: 35% of browser events blocked",
                                 "2026-11-12T20:00:00Z", {"ad_blocker_share": 0.35}),
    "healthy_tiny_shop.v1": ("A tiny shop: a handful of events an hour, many empty hours",
                             "2026-11-12T16:00:00Z", {"scale": 0.05}),
    "healthy_big_shop.v1": ("A large shop at five times the usual volume", "2026-11-12T21:00:00Z",
                            {"scale": 5.0}),
    "healthy_hourly_batch.v1": ("A backend that flushes server events once an hour",
                                "2026-11-12T19:10:00Z", {"batch_interval_minutes": 60}),
    "healthy_dst_change.v1": ("The week after the US clocks moved back an hour (baseline weeks straddle it)",
                              "2026-11-04T14:00:00Z", {}, "America/New_York", "2026-10-12T00:00:00Z", 24),
    "healthy_monday_morning.v1": ("Monday morning ramp-up after a quiet weekend", "2026-11-16T08:00:00Z",
                                  {"weekend_factor": 0.6}, "Europe/Berlin"),
    "healthy_tokyo.v1": ("A shop in Tokyo audited at its local evening peak", "2026-11-12T11:00:00Z", {},
                         "Asia/Tokyo"),
    "healthy_few_ad_clicks.v1": ("Mostly organic traffic: few visits carry an ad click id (fbc)",
                                 "2026-11-12T18:00:00Z", {"fbc_share": 0.08}),
    "healthy_midnight_utc.v1": ("The audit across midnight UTC on a Los Angeles shop", "2026-11-13T00:00:00Z",
                                {}, "America/Los_Angeles"),
}


def _seed(scenario_id: str) -> int:
    return int(hashlib.sha256(scenario_id.encode()).hexdigest()[:6], 16)


def _pixel(index: int) -> str:
    return str(1100000100 + index)


def _period(audit_at: str) -> tuple[str, int]:
    """Start and length of a record: HISTORY_DAYS whole days before the audited day, plus that day."""
    audit_day = datetime.fromisoformat(audit_at).replace(hour=0, minute=0, second=0)
    start = audit_day - timedelta(days=HISTORY_DAYS)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), HISTORY_DAYS + 1


def build_library() -> list[Scenario]:
    """Every generated record, validated, in a stable order: the hand-specified variants, the failure
    families' draws, the realistic healthy world."""
    out: list[Scenario] = []
    for index, (sid, (description, injections, audit_at, causes, findings, shop)) in enumerate(PROBLEMS.items()):
        start, days = _period(audit_at)
        out.append(Scenario.model_validate({
            "id": sid, "description": description, "seed": _seed(sid), "pixel_id": _pixel(index),
            "timezone": "Europe/Paris", "start": start, "days": days,
            "shop": {"scale": 1.0, "sales_spikes": [], **shop}, "injections": injections, "audit_at": audit_at,
            "family": f"classic_{causes[0]}", "detect_within_hours": CLASSIC_TARGET_HOURS,
            "expect": {"root_causes": causes, "findings_any": findings,
                       "healthy": False}}))
    for offset, (sid, spec) in enumerate(HEALTHY.items(), start=len(PROBLEMS)):
        description, audit_at, shop, *rest = spec
        timezone = rest[0] if rest else "Europe/Paris"
        start, days = rest[1:] if len(rest) > 1 else _period(audit_at)
        out.append(Scenario.model_validate({
            "id": sid, "description": description, "seed": _seed(sid), "pixel_id": _pixel(offset),
            "timezone": timezone, "start": start, "days": days, "shop": {"scale": 1.0, "sales_spikes": [], **shop},
            "injections": [], "audit_at": audit_at, "family": "healthy_classic",
            "expect": {"root_causes": ["none"], "findings_any": [], "healthy": True}}))
    out.extend(Scenario.model_validate(record) for record in family_records(FAMILY_PIXEL_BASE))
    out.extend(Scenario.model_validate(record) for record in healthy_records(HEALTHY_PIXEL_BASE))
    return out


# CI's eval: one seeded draw per failure family, except the families whose variants need up to 73
# hourly audits (Lead at 0.3/h, 6-48 h ramps: they run in the full eval), plus real-demand and
# demand-event healthy shops (not the 20,000- and 50,000-a-day ones) and one classic healthy shop.
CI_SEED = 2026
# dedup_reasons, payload_quality and orders_backfill came after the floors were set: in the full eval
# only, so the CI draw (and its healthy shops) stays the one the floors were measured on.
CI_SKIPPED_FAMILIES = ("lead_low_volume_lost", "gradual_server_loss", "gradual_pixel_loss", "dedup_reasons",
                       "payload_quality", "orders_backfill")
CI_HEALTHY = {"healthy_real_demand": 3, "healthy_demand_events": 2, "healthy_classic": 1}
_CI_TOO_BIG = ("healthy_real_size_20000.v1", "healthy_real_size_50000.v1")
# Crawler bursts came after the floors were set: in the full eval only, so the CI draw stays the one
# the floors were measured on.
_CI_LATER = ("healthy_event_bots_11.v1", "healthy_event_bots_12.v1")


def ci_subset(scenarios: list[Scenario]) -> list[Scenario]:
    """The scenarios CI runs (see ``CI_SKIPPED_FAMILIES``), drawn with ``CI_SEED``, in library order."""
    import random

    from evals.evaluate.families import FAMILIES

    rng = random.Random(f"capi-eval-ci:{CI_SEED}")
    wanted = {f.name: 1 for f in FAMILIES if f.name not in CI_SKIPPED_FAMILIES} | CI_HEALTHY
    chosen: set[str] = set()
    for family, count in wanted.items():
        members = sorted(s.id for s in scenarios
                         if s.family_name == family and s.id not in _CI_TOO_BIG and s.id not in _CI_LATER)
        chosen.update(rng.sample(members, min(count, len(members))))
    return [s for s in scenarios if s.id in chosen]


SUBSETS = {"ci": ci_subset}


def file_name(scenario: Scenario) -> str:
    return scenario.id.replace(".", "_") + ".json"


def render(scenario: Scenario) -> str:
    return json.dumps(scenario.model_dump(mode="json"), indent=2) + "\n"


def write_library(out_dir: Path, scenarios: list[Scenario] | None = None) -> list[Path]:
    """Write each record as ``<id with _>.json``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for scenario in scenarios if scenarios is not None else build_library():
        path = out_dir / file_name(scenario)
        path.write_text(render(scenario), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_scenario_dir())
    parser.add_argument("--only", default="", help="comma-separated ids")
    args = parser.parse_args(argv)
    wanted = {part for part in args.only.split(",") if part}
    scenarios = [s for s in build_library() if not wanted or s.id in wanted]
    for path in write_library(args.out, scenarios):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
