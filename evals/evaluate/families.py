"""Failure families and the realistic healthy world: many variants drawn from seeded parameters.

Every variant is a plain scenario record (``tools.synth.scenario.Scenario``). Draws come from one
``random.Random`` per family (seeded by its name), so the library is reproducible byte for byte; a
variant's traffic seed derives from its id.

Shops are drawn the same way for every family (``draw_shop``): a real demand series (NAB tweet volumes,
moved by whole weeks onto the simulated dates), a time zone out of seven (the US and EU DST changes of
late October / early November fall inside the 15-day baselines), over-dispersed hourly noise, an
ad-block share that drifts slowly, every hashed customer-information key Meta accepts, IPv4 and IPv6,
and half of the senders batching at arbitrary minutes with a late start.

Detection targets (``detect_within_hours``) are what a person running a shop would accept, not what the
checks manage today: a total loss within 3 hours, a partial one within 6, a Purchase stream of 2-3 an
hour within 6 audit hours, a Lead stream of 0.3 an hour within 48 (at 0.3/h, 48 hours without a Lead
has probability e^-14), a failure older than the first audit at that audit, a gradual loss by the end
of its ramp. A variant's target is never shorter than the time an ideal test needs for 7 nats of evidence
(``evidence_hours``): one that knows the usual rate and the onset, and compares the affected stream's
counts with its usual rate. For a total loss that is 7 expected events (a silence that long has
probability e^-7 < 0.001); a loss of a share m of a stream at rate r brings r((1-m)ln(1-m)+m) nats an
hour (the Poisson Kullback-Leibler divergence), so a 58 % loss needs 4.6 times the hours of a total one
and a 30 % loss 20 times. A small shop's night-time or partial failure is given the hours the evidence
needs, and no more.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tools.synth.causes_traffic import DEDUP_REASONS
from tools.synth.injection import Injection
from tools.synth.realdemand import SERIES, anomaly_windows, shift_weeks_for
from tools.synth.shop import EVENT_PROFILES, MEAN_DAILY_SHAPE, ShopConfig, ad_blocker_share, traffic_factor

HISTORY_DAYS = 15
WEEK_START = datetime(2026, 11, 9, tzinfo=UTC)  # a Monday: onsets fall anywhere in this week
TIMEZONES = ("Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney",
             "Europe/London", "UTC")
SELLABLE = ("ViewContent", "AddToCart", "InitiateCheckout", "Purchase")
# Events a day at scale 1.0 (server side, mean demand): peak rates x the mean daily shape x 24 h.
EVENTS_PER_DAY_AT_SCALE_1 = sum(p.peak_per_hour * p.server_share for p in EVENT_PROFILES) * MEAN_DAILY_SHAPE * 24
PURCHASE_PER_HOUR_AT_SCALE_1 = next(p.peak_per_hour * p.server_share for p in EVENT_PROFILES
                                    if p.name == "Purchase") * MEAN_DAILY_SHAPE


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scale_for_events_per_day(per_day: float) -> float:
    return round(per_day / EVENTS_PER_DAY_AT_SCALE_1, 5)


def draw_shop(rng: random.Random, *, scale: float | None = None, batch: bool | None = None) -> dict[str, Any]:
    """A realistic shop block (ShopConfig fields) and its time zone under ``"_timezone"``."""
    timezone = rng.choice(TIMEZONES)
    if scale is None:
        scale = scale_for_events_per_day(math.exp(rng.uniform(math.log(150), math.log(4000))))
    shop: dict[str, Any] = {
        "_timezone": timezone,
        "scale": scale, "sales_spikes": [],
        "demand_series": rng.choice(SERIES),
        "dispersion_k": round(rng.uniform(8, 40), 1),
        "ad_blocker_share": round(rng.uniform(0.05, 0.4), 3),
        "ad_blocker_drift": round(rng.uniform(0.0, 0.08), 3),
        "ad_blocker_drift_days": round(rng.uniform(10, 40), 1),
        "fbc_share": round(rng.uniform(0.08, 0.5), 3),
        "weekend_factor": round(rng.uniform(0.6, 1.3), 2),
        "full_user_data": True,
        "country": rng.choice(("us", "fr", "gb", "de", "jp", "au")),
    }
    # The blocked share's daily cycle and hour-to-hour spread come from a stream of their own, seeded
    # by what was drawn above, so adding them left every scenario's other draws (onsets, shops) as they were.
    mix = random.Random(f"capi-eval-mix:{shop['ad_blocker_share']}:{shop['fbc_share']}:{shop['dispersion_k']}")
    shop["ad_blocker_daily"] = round(mix.uniform(0.0, 0.08), 3)
    shop["ad_blocker_concentration"] = round(math.exp(mix.uniform(math.log(150), math.log(3000))), 1)
    if batch if batch is not None else rng.random() < 0.5:
        interval = rng.choice((5, 10, 15, 30, 60))
        shop.update(batch_interval_minutes=interval, batch_offset_minutes=rng.randrange(interval),
                    batch_jitter_seconds=rng.randrange(0, 180))
    return shop


def series_shift(rng: random.Random, series: str, local_when: datetime) -> int:
    """Whole weeks that put a random point of the series' recorded span under ``local_when``."""
    point = datetime(2015, 3, 16) + timedelta(hours=rng.randrange(0, 35 * 24))
    return shift_weeks_for(series, local_when.replace(tzinfo=None), point)


def draw_onset(rng: random.Random) -> datetime:
    """Any minute of the week: nights and weekends as likely as office hours."""
    return WEEK_START + timedelta(minutes=rng.randrange(7 * 24 * 60))


@dataclass(frozen=True)
class Family:
    name: str
    causes: tuple[str, ...]
    target_hours: float | None  # None: the variant sets its own (e.g. a gradual ramp's length)
    count: int
    description: str
    # -> injections, description, shop and timing overrides; called as draw(rng, k) when ``by_variant``
    draw: Callable[..., dict[str, Any]]
    # The variant number k (from 1) is passed too: a family whose variants must each show one kind of
    # a list takes kind k instead of leaving it to chance.
    by_variant: bool = False


def _inj(cause: str, onset: datetime, **kw: Any) -> dict[str, Any]:
    params = kw.pop("params", {})
    out = {"cause": cause, "onset": iso(onset), "end": None, "events": None, "magnitude": None, "params": params}
    for key, value in kw.items():
        out[key] = iso(value) if isinstance(value, datetime) else value
    return out


def _events(rng: random.Random) -> list[str] | None:
    return None if rng.random() < 0.5 else sorted(rng.sample(SELLABLE, rng.randint(1, 3)))


def _pixel_down_total(rng: random.Random) -> dict[str, Any]:
    onset = draw_onset(rng)
    return {"injections": [_inj("browser_pixel_down", onset)],
            "what": "The Pixel tag disappears from every page (theme change)"}


def _pixel_down_partial(rng: random.Random) -> dict[str, Any]:
    onset, share, events = draw_onset(rng), round(rng.uniform(0.3, 0.9), 2), _events(rng)
    return {"injections": [_inj("browser_pixel_down", onset, magnitude=share, events=events)],
            "what": f"A consent or tag change hides {share:.0%} of Pixel events ({', '.join(events or ['all'])})"}


def _server_down_total(rng: random.Random) -> dict[str, Any]:
    return {"injections": [_inj("server_events_down", draw_onset(rng))],
            "what": "The CAPI integration stops sending anything (plugin disabled)"}


def _server_down_partial(rng: random.Random) -> dict[str, Any]:
    share, events = round(rng.uniform(0.3, 0.9), 2), _events(rng)
    return {"injections": [_inj("server_events_down", draw_onset(rng), magnitude=share, events=events)],
            "what": f"{share:.0%} of server events stop ({', '.join(events or ['all'])})"}


def _purchase_low_volume(rng: random.Random) -> dict[str, Any]:
    rate = rng.uniform(2.0, 3.0)
    return {"injections": [_inj("server_events_down", draw_onset(rng), events=["Purchase"])],
            "scale": round(rate / PURCHASE_PER_HOUR_AT_SCALE_1, 4),
            "what": f"The order webhook stops: server Purchase (about {rate:.1f} an hour) ends"}


def _lead_low_volume(rng: random.Random) -> dict[str, Any]:
    return {"injections": [_inj("server_events_down", draw_onset(rng), events=["Lead"])],
            "scale": round(rng.uniform(0.8, 1.2), 3),
            "what": "The newsletter form stops sending server Lead events (about 0.3 an hour)"}


def _gradual(cause: str) -> Callable[[random.Random], dict[str, Any]]:
    def draw(rng: random.Random) -> dict[str, Any]:
        ramp = rng.randint(6, 48)
        share = round(rng.uniform(0.7, 1.0), 2)
        side = "server events" if cause == "server_events_down" else "Pixel events"
        return {"injections": [_inj(cause, draw_onset(rng), magnitude=share, ramp_hours=float(ramp))],
                "target": float(ramp),
                "what": f"A staged rollout loses {side}: 0 to {share:.0%} over {ramp} h"}
    return draw


def _token(rng: random.Random) -> dict[str, Any]:
    reads = rng.random() < 0.3
    return {"injections": [_inj("access_token_invalid", draw_onset(rng), params={"reads_expired": reads})],
            "what": "The system-user token is revoked" + (" (the agent's reads fail too)" if reads else "")}


def _past_gap(rng: random.Random) -> dict[str, Any]:
    first_audit = WEEK_START + timedelta(hours=rng.randrange(7 * 24))
    hours_before = rng.randint(2, 6)
    length = rng.randint(1, min(3, hours_before - 1) if hours_before > 1 else 1)
    onset = first_audit - timedelta(hours=hours_before)
    return {"injections": [_inj("missed_batch", onset, end=onset + timedelta(hours=length))],
            "first_audit_at": first_audit, "audit_hours": 2, "batch": True,
            "what": f"A batch run {hours_before} h before the audit never sent {length} h of recorded events"}


def _missed_batch_live(rng: random.Random) -> dict[str, Any]:
    onset = draw_onset(rng).replace(minute=0)
    return {"injections": [_inj("missed_batch", onset, end=onset + timedelta(hours=rng.randint(1, 2)))],
            "batch": True, "what": "The batch job skips its runs (a worker crash)"}


def _late(rng: random.Random) -> dict[str, Any]:
    delay = round(rng.uniform(2, 8), 1)
    # Until the queue delivers its first late batch (up to 1.4 x the delay after the onset), a backlog
    # and a stopped sender are the same picture: the cause is audited until it can be seen, two hours
    # past that. The detection target stays the family's.
    return {"injections": [_inj("late_delivery", draw_onset(rng), magnitude=delay)],
            "audit_hours": math.ceil(delay * 1.4) + 2,
            "what": f"A queue backlog holds server events about {delay:g} h"}


def _dedup(rng: random.Random) -> dict[str, Any]:
    side = rng.choice(("server", "browser", "both"))
    share = 1.0 if side != "server" else round(rng.uniform(0.5, 1.0), 2)
    return {"injections": [_inj("dedup_broken", draw_onset(rng), magnitude=share, params={"side": side})],
            "what": f"event_id stops being sent ({side} side, {share:.0%})"}


def _dedup_reasons(rng: random.Random, k: int) -> dict[str, Any]:
    # Variant k shows reason k (in turn), so every reason has a scenario. The draw that chose among the
    # three id reasons before is still made: the variants' shops and onsets stay the ones already in
    # the library.
    rng.choice(DEDUP_REASONS[:3])
    reason = DEDUP_REASONS[(k - 1) % len(DEDUP_REASONS)]
    share = round(rng.uniform(0.6, 1.0), 2)
    onset = draw_onset(rng)
    if reason == "server_late":
        # A standing habit, not a release: Purchases paid by bank transfer or invoice are reported when
        # the payment clears, 2-4 days after checkout. It began days before the agent's first audit
        # (there is no moment of change to date), so the late copies are already arriving when it starts.
        late_share = round(share / 2, 2)
        first_audit = onset.replace(minute=0)
        return {"injections": [_inj("dedup_broken", first_audit - timedelta(days=5), magnitude=late_share,
                                    events=["Purchase"], params={"reason": reason})],
                "first_audit_at": first_audit, "audit_hours": 2,
                "what": f"Server Purchases of payments that clear later ({late_share:.0%}) are sent 50-96 h "
                        "after checkout, too late for Meta to merge them with the Pixel's"}
    return {"injections": [_inj("dedup_broken", onset, magnitude=share, params={"reason": reason})],
            "what": f"Server event_ids change form ({reason}, {share:.0%}) while the Pixel's stay"}


# Variant k's accepted-but-useless defects besides its constant IP or missing user agent: together the
# four variants show every payload.* kind the synth can inject.
PAYLOAD_EXTRAS = (("test_event_code", "purchase_value_text"), ("purchase_value_zero", "website_no_source_url"),
                  ("test_event_code", "purchase_no_currency"), ("user_data_not_string", "no_action_source"))


def _payload_quality(rng: random.Random, k: int) -> dict[str, Any]:
    # The draw that chose the extras before is still made, so the variants keep their shops and onsets.
    rng.sample(("test_event_code", "purchase_no_currency", "purchase_value_text", "no_action_source",
                "website_no_source_url"), 2)
    extras = list(PAYLOAD_EXTRAS[(k - 1) % len(PAYLOAD_EXTRAS)])
    if rng.random() < 0.5:  # the server's own address for everyone: every event
        params: dict[str, Any] = {"keys": [], "payload": ["constant_ip", *extras]}
        share = 1.0
    else:
        params = {"keys": ["client_user_agent"], "payload": extras}
        share = round(rng.uniform(0.6, 1.0), 2)
    return {"injections": [_inj("match_keys_lost", draw_onset(rng), magnitude=share, params=params)],
            "what": f"A sender update spoils payloads Meta still accepts ({', '.join(params['payload'])}"
                    f"{', no user agent' if params['keys'] else ''}; {share:.0%})"}


def _hashing(rng: random.Random) -> dict[str, Any]:
    mode = rng.choice(("raw", "uppercase", "placeholder", "must_not_hash"))
    return {"injections": [_inj("hashing_error", draw_onset(rng), params={"mode": mode})],
            "what": f"A release breaks hashing ({mode})"}


def _keys_lost(rng: random.Random) -> dict[str, Any]:
    keys = rng.choice((["fbc"], ["fbp"], ["client_ip_address", "client_user_agent"], ["em"], ["ph"],
                       ["fbp", "client_ip_address"], ["external_id"]))
    events = None if rng.random() < 0.6 else ["Purchase"]
    return {"injections": [_inj("match_keys_lost", draw_onset(rng), events=events, params={"keys": keys})],
            "what": f"Server events stop carrying {', '.join(keys)} ({', '.join(events or ['all events'])})"}


def _malformed(rng: random.Random) -> dict[str, Any]:
    share = round(rng.uniform(0.3, 0.9), 2)
    return {"injections": [_inj("malformed_parameter", draw_onset(rng), magnitude=share)],
            "what": f"A deploy writes fbc in seconds; Meta rejects the batches ({share:.0%} of events)"}


def _retry_storm(rng: random.Random) -> dict[str, Any]:
    copies = rng.randint(2, 6)
    events = _events(rng)
    return {"injections": [_inj("duplicate_events", draw_onset(rng), magnitude=float(copies), events=events)],
            "what": f"A sender retry loop delivers each event {copies} times with the same event_id"}


def _order_twice(rng: random.Random) -> dict[str, Any]:
    return {"injections": [_inj("duplicate_events", draw_onset(rng), magnitude=2.0, events=["Purchase"],
                                params={"new_event_id": True})],
            "what": "A second integration sends every order again under its own event_id"}


def _renamed(rng: random.Random) -> dict[str, Any]:
    to, side = rng.choice(("purchase", "Purchased", "checkout_complete")), rng.choice(("server", "both"))
    return {"injections": [_inj("event_renamed", draw_onset(rng), params={"from": "Purchase", "to": to,
                                                                         "side": side})],
            "what": f"Purchase is renamed {to!r} ({side} side)"}


def _skew(rng: random.Random) -> dict[str, Any]:
    hours, direction = round(rng.uniform(2, 8), 1), rng.choice(("ahead", "behind"))
    return {"injections": [_inj("clock_skew", draw_onset(rng), magnitude=hours, params={"direction": direction})],
            "what": f"The server clock runs {hours:g} h {direction}"}


def _rate(rng: random.Random) -> dict[str, Any]:
    code = rng.choice((4, 17, 613, 80004))
    return {"injections": [_inj("rate_limited", draw_onset(rng), magnitude=round(rng.uniform(0.6, 1.0), 2),
                                params={"code": code})],
            "what": f"Sends are throttled (code {code})"}


_PREEXISTING: tuple[tuple[str, dict[str, Any]], ...] = (
    ("server_events_down", {"events": ["Purchase"], "magnitude": 0.6}),
    ("match_keys_lost", {"params": {"keys": ["fbc"]}}),
    ("hashing_error", {"params": {"mode": "raw"}}),
    ("dedup_broken", {"params": {"side": "server"}}),
    ("browser_pixel_down", {"magnitude": 0.5}),
    ("event_renamed", {"params": {"from": "Purchase", "to": "purchase", "side": "server"}}),
    ("server_events_down", {}),
    ("access_token_invalid", {}),
)


def _preexisting(rng: random.Random) -> dict[str, Any]:
    cause, kw = rng.choice(_PREEXISTING)
    days = rng.randint(1, 7)
    first_audit = WEEK_START + timedelta(days=6, hours=rng.randrange(24))
    onset = first_audit - timedelta(days=days, minutes=rng.randrange(24 * 60))
    return {"injections": [_inj(cause, onset, **kw)], "causes": [cause], "first_audit_at": first_audit,
            "audit_hours": 2, "what": f"{cause} began {days} day(s) before the agent's first audit"}


_PAIRS = (("access_token_invalid", "match_keys_lost"), ("browser_pixel_down", "hashing_error"),
          ("server_events_down", "dedup_broken"), ("clock_skew", "browser_pixel_down"),
          ("event_renamed", "match_keys_lost"), ("rate_limited", "hashing_error"))
_PAIR_KW: dict[str, dict[str, Any]] = {
    "access_token_invalid": {}, "match_keys_lost": {"params": {"keys": ["fbc"]}},
    "browser_pixel_down": {"events": ["InitiateCheckout", "Purchase"]}, "hashing_error": {"params": {"mode": "raw"}},
    "server_events_down": {"events": ["Purchase"]}, "dedup_broken": {"params": {"side": "server"}},
    "clock_skew": {"magnitude": 3.0}, "event_renamed": {"params": {"from": "Purchase", "to": "Purchased",
                                                                    "side": "both"}},
    "rate_limited": {"params": {"code": 17}}}


def _two(rng: random.Random) -> dict[str, Any]:
    first, second = rng.choice(_PAIRS)
    onset = draw_onset(rng)
    later = onset + timedelta(minutes=rng.randrange(0, 180))
    return {"injections": [_inj(first, onset, **_PAIR_KW[first]), _inj(second, later, **_PAIR_KW[second])],
            "causes": [first, second], "what": f"Two things at once: {first} and {second}"}


def _orders_backfill(rng: random.Random) -> dict[str, Any]:
    """The server's Purchase pipeline stops while the shop keeps taking orders, and its orders carry
    the customer (hashed): the Purchases Meta lost can be rebuilt from them (backfill_from_orders)."""
    rate = rng.uniform(3.0, 12.0)
    onset = draw_onset(rng)
    # First audited 3 hours in: orders settle an hour before a backfill takes them, so an audit in the
    # first hour could only propose an empty one; here the eval scores the backfill it proposes.
    first_audit = onset.replace(minute=0) + timedelta(hours=3)
    return {"injections": [_inj("server_events_down", onset, events=["Purchase"])],
            "scale": round(rate / PURCHASE_PER_HOUR_AT_SCALE_1, 4), "first_audit_at": first_audit,
            "audit_hours": 2,
            "what": f"The Purchase pipeline stops (about {rate:.1f} orders an hour go on without it)"}


# Plugins and SDKs a shop's server events come from (ingest ``sender`` objects); Meta's SDKs say
# fbbizsdk-<language>-v<version> in their User-Agent.
SENDER_PLUGINS = ("woo-capi", "shopware-meta-capi", "magento2-conversions", "prestashop-fb-capi")
SDK_LANGUAGES = ("php", "nodejs", "python", "java")


def _sender_change(rng: random.Random) -> dict[str, Any]:
    """A plugin update (or an SDK upgrade) from which the shop's server Purchase events stop: the
    incident must name the change."""
    language = rng.choice(SDK_LANGUAGES)
    sdk = rng.randint(16, 21)
    major, minor, patch = rng.randint(1, 5), rng.randint(0, 9), rng.randint(0, 9)
    if rng.random() < 0.75:
        plugin = rng.choice(SENDER_PLUGINS)
        agent = f"fbbizsdk-{language}-v{sdk}.0.0"
        before = {"user_agent": agent, "partner_agent": f"{plugin}-{major}.{minor}.{patch}"}
        after = {"user_agent": agent, "partner_agent": f"{plugin}-{major}.{minor + 1}.0"}
        what = f"{plugin} {major}.{minor}.{patch} -> {major}.{minor + 1}.0 stops sending Purchase"
    else:
        before = {"user_agent": f"fbbizsdk-{language}-v{sdk}.0.1"}
        after = {"user_agent": f"fbbizsdk-{language}-v{sdk + 1}.0.0"}
        what = f"An upgrade of Meta's {language} SDK (v{sdk} -> v{sdk + 1}) stops Purchase"
    onset = draw_onset(rng)
    return {"injections": [_inj("server_events_down", onset, events=["Purchase"],
                                params={"sender": {"before": before, "after": after}})],
            "what": what}


FAMILIES: tuple[Family, ...] = (
    Family("pixel_down_total", ("browser_pixel_down",), 3, 6, "Pixel gone from every page", _pixel_down_total),
    Family("pixel_down_partial", ("browser_pixel_down",), 6, 6, "30-90% of Pixel events lost", _pixel_down_partial),
    Family("server_down_total", ("server_events_down",), 3, 6, "Server events stop", _server_down_total),
    Family("server_down_partial", ("server_events_down",), 6, 6, "30-90% of server events stop",
           _server_down_partial),
    Family("purchase_low_volume_lost", ("server_events_down",), 6, 6, "Purchase at 2-3/h stops",
           _purchase_low_volume),
    Family("lead_low_volume_lost", ("server_events_down",), 48, 4, "Lead at 0.3/h stops", _lead_low_volume),
    Family("gradual_server_loss", ("server_events_down",), None, 5, "Server loss ramping over 6-48 h",
           _gradual("server_events_down")),
    Family("gradual_pixel_loss", ("browser_pixel_down",), None, 4, "Pixel loss ramping over 6-48 h",
           _gradual("browser_pixel_down")),
    Family("token_revoked", ("access_token_invalid",), 2, 5, "Send token revoked", _token),
    Family("past_unsent_gap", ("missed_batch",), 1, 6, "Recorded-but-never-sent hours 2-6 h before the audit",
           _past_gap),
    Family("missed_batch_live", ("missed_batch",), 2, 4, "Batch runs skipped", _missed_batch_live),
    Family("late_delivery", ("late_delivery",), 3, 5, "Deliveries held 2-8 h", _late),
    Family("dedup_broken", ("dedup_broken",), 6, 6, "event_id missing on one side", _dedup),
    Family("hashing_error", ("hashing_error",), 2, 6, "Hashing broken", _hashing),
    Family("match_keys_lost", ("match_keys_lost",), 12, 6, "Match keys stop being sent", _keys_lost),
    Family("malformed_parameter", ("malformed_parameter",), 2, 4, "Batches rejected for a bad fbc", _malformed),
    Family("retry_storm", ("duplicate_events",), 3, 4, "Same event_id delivered repeatedly", _retry_storm),
    Family("order_sent_twice", ("duplicate_events",), 6, 4, "Same order under two event_ids", _order_twice),
    Family("purchase_renamed", ("event_renamed",), 3, 6, "Purchase renamed", _renamed),
    Family("clock_skew", ("clock_skew",), 3, 6, "Server clock hours ahead or behind", _skew),
    Family("rate_limited", ("rate_limited",), 2, 4, "Sends throttled", _rate),
    Family("preexisting_failure", (), 1, 8, "Failure began 1-7 days before the first audit", _preexisting),
    Family("two_causes", (), 6, 6, "Two causes at once", _two),
    Family("sender_change", ("server_events_down",), 6, 4, "A sender update breaks Purchase, with a visible "
           "change of sender", _sender_change),
    # Last, so the earlier families keep their pixel ids.
    Family("dedup_reasons", ("dedup_broken",), 6, 4, "Both sides carry event_id, yet the pairs do not merge",
           _dedup_reasons, by_variant=True),
    Family("payload_quality", ("match_keys_lost",), 12, 4, "Accepted but useless payloads", _payload_quality,
           by_variant=True),
    Family("orders_backfill", ("server_events_down",), 6, 4, "Orders go on without their server Purchases",
           _orders_backfill),
)


# Evidence an ideal test needs, in nats: a stream that should have brought 7 events and brought none has
# probability e^-7 < 0.001 (Poisson), 7 nats. A variant's target is its family's, or the hours an ideal
# test (usual rate and onset known) needs to gather that much evidence at the shop's demand from the
# onset, whichever is longer (a tiny shop's rename cannot be seen before a renamed event arrives; a
# partial loss tells less per event than a total one).
EVIDENCE_EVENTS = 7.0
MAX_TARGET_HOURS = 96


def _key_share(config: ShopConfig, profile: Any, keys: list[str]) -> float:
    shares = {"em": profile.em, "ph": profile.ph, "external_id": profile.external_id, "fbc": config.fbc_share,
              "fbp": config.fbp_share}
    return max(shares.get(key, 1.0) for key in keys)


def affected_rate(config: ShopConfig, injection: Injection, hour: datetime) -> float:
    """Expected events an hour that the injection changes (at the shop's demand, no noise)."""
    rate, share = _stream_and_share(config, injection, hour)
    return rate * share


def evidence_rate(config: ShopConfig, injection: Injection, hour: datetime) -> float:
    """Nats an hour an ideal test gathers: the Poisson Kullback-Leibler divergence of the stream's counts
    after a loss of a share m from its usual rate r, r((1-m)ln(1-m)+m) (r m = the lost events when m = 1)."""
    rate, share = _stream_and_share(config, injection, hour)
    if injection.cause not in _LOSS_CAUSES:
        # Something that appears (raw emails, rejected batches) is news from its first events on: the
        # affected events themselves, as before.
        return rate * share
    kept = 1.0 - min(max(share, 0.0), 1.0)
    return rate * ((kept * math.log(kept) if kept > 0 else 0.0) + 1.0 - kept)


def _stream_and_share(config: ShopConfig, injection: Injection, hour: datetime) -> tuple[float, float]:
    """The affected stream's usual events an hour and the share of them the injection changes."""
    names = injection.events
    if injection.cause == "event_renamed":
        names = [injection.params.get("from") or "AddToCart"]
    browser_side = injection.cause == "browser_pixel_down" or (
        injection.cause == "dedup_broken" and injection.params.get("side") == "browser")
    share = injection.share_at(hour + timedelta(minutes=30)) if injection.cause in _SHARE_CAUSES else 1.0
    rate = 0.0
    for profile in EVENT_PROFILES:
        if names is not None and profile.name not in names:
            continue
        seen = (1 - ad_blocker_share(config, hour)) if browser_side else profile.server_share
        if injection.cause == "match_keys_lost":
            seen *= _key_share(config, profile, injection.params.get("keys") or [injection.params.get("key", "fbc")])
        elif injection.cause == "hashing_error" and injection.params.get("mode", "raw") in ("raw", "uppercase"):
            seen *= profile.em
        rate += profile.peak_per_hour * seen
    return traffic_factor(config, hour) * rate, share


# Causes that take a share of a stream away (events, or events carrying a key or an event_id).
_LOSS_CAUSES = frozenset({"browser_pixel_down", "server_events_down", "missed_batch", "dedup_broken",
                          "match_keys_lost", "event_renamed"})
_SHARE_CAUSES = frozenset({"browser_pixel_down", "server_events_down", "missed_batch", "dedup_broken",
                           "hashing_error", "match_keys_lost", "malformed_parameter", "event_renamed"})


def expected_affected(config: ShopConfig, injection: Injection, since: datetime, until: datetime | None) -> float:
    """Expected affected events between two times (hour by hour, the first and last hour pro rata)."""
    return _over_hours(affected_rate, config, injection, since, until)


def _over_hours(per_hour: Callable[[ShopConfig, Injection, datetime], float], config: ShopConfig,
                injection: Injection, since: datetime, until: datetime | None) -> float:
    total, hour = 0.0, since.replace(minute=0, second=0, microsecond=0)
    until = until or since + timedelta(hours=MAX_TARGET_HOURS)
    while hour < until:
        lo, hi = max(hour, since), min(hour + timedelta(hours=1), until)
        if injection.active(lo):
            total += per_hour(config, injection, hour) * (hi - lo).total_seconds() / 3600
        hour += timedelta(hours=1)
    return total


def expected_evidence(config: ShopConfig, injection: Injection, since: datetime, until: datetime | None) -> float:
    """Nats an ideal test gathers between two times (``evidence_rate``, the first and last hour pro rata)."""
    return _over_hours(evidence_rate, config, injection, since, until)


def evidence_hours(config: ShopConfig, injection: Injection, clock_from: datetime) -> int:
    """Whole hours from ``clock_from`` until an ideal test has EVIDENCE_EVENTS nats since the onset."""
    total = expected_evidence(config, injection, injection.onset, clock_from) if injection.onset < clock_from else 0
    hour = clock_from
    for hours in range(1, MAX_TARGET_HOURS + 1):
        step = hour + timedelta(hours=1)
        if injection.active(hour):
            total += expected_evidence(config, injection, hour, step)
        if total >= EVIDENCE_EVENTS:
            return hours
        hour = step
    return MAX_TARGET_HOURS


def _seed(scenario_id: str) -> int:
    return int(hashlib.sha256(scenario_id.encode()).hexdigest()[:6], 16)


def _start_for(first: datetime) -> datetime:
    return (first - timedelta(days=HISTORY_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)


def family_records(pixel_base: int) -> list[dict[str, Any]]:
    """Every failure family's variants as scenario records (dicts), in a stable order."""
    out: list[dict[str, Any]] = []
    for family in FAMILIES:
        rng = random.Random(f"capi-eval-family:{family.name}")
        for k in range(1, family.count + 1):
            sid = f"{family.name}_{k:02d}.v1"
            drawn = family.draw(rng, k) if family.by_variant else family.draw(rng)
            shop = draw_shop(rng, batch=drawn.get("batch"))
            if "scale" in drawn:
                shop["scale"] = drawn["scale"]
            timezone = shop.pop("_timezone")
            onsets = [datetime.fromisoformat(i["onset"]) for i in drawn["injections"]]
            first = drawn.get("first_audit_at") or (min(onsets).replace(minute=0, second=0) + timedelta(hours=1))
            shop["demand_shift_weeks"] = series_shift(rng, shop["demand_series"], first.astimezone(ZoneInfo(timezone)))
            config = ShopConfig(**shop, timezone=timezone)
            injections = [Injection.model_validate(i) for i in drawn["injections"]]
            if any(i.cause == "missed_batch" for i in injections):
                # A gap must hold evidence: at least EVIDENCE_EVENTS expected events (else scale the shop up).
                held = expected_affected(config, injections[0], injections[0].onset, injections[0].end)
                if held < EVIDENCE_EVENTS:
                    shop["scale"] = round(shop["scale"] * EVIDENCE_EVENTS * 1.2 / max(held, 0.05), 5)
                    config = ShopConfig(**shop, timezone=timezone)
            base = drawn.get("target", family.target_hours)
            if base is None:
                raise ValueError(f"{sid}: family {family.name} has no target_hours and its variant drew no target")
            clock_from = max(min(onsets), first - timedelta(hours=1))
            target = float(max(base, min(evidence_hours(config, i, clock_from) for i in injections)))
            hours = drawn.get("audit_hours") or math.ceil(target * 1.5) + 1
            audit_at = first + timedelta(hours=hours - 1)
            start = _start_for(min([*onsets, first]))
            causes = drawn.get("causes") or list(family.causes)
            out.append({
                "id": sid, "description": f"{family.description}: {drawn['what']}", "seed": _seed(sid),
                "pixel_id": str(pixel_base + len(out)), "timezone": timezone, "start": iso(start),
                "days": (audit_at - start).days + 1, "shop": shop, "injections": drawn["injections"],
                "audit_at": iso(audit_at), "family": family.name,
                "first_audit_at": iso(first) if drawn.get("first_audit_at") else None,
                "detect_within_hours": target,
                "expect": {"root_causes": causes, "findings_any": [], "healthy": False}})
    return out


# --------------------------------------------------------------------------- the healthy world

def _healthy(sid: str, description: str, family: str, shop: dict[str, Any], audit_at: datetime,
             pixel: int, *, days: int = HISTORY_DAYS + 1) -> dict[str, Any]:
    timezone = shop.pop("_timezone")
    start = (audit_at - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"id": sid, "description": description, "seed": _seed(sid), "pixel_id": str(pixel),
            "timezone": timezone, "start": iso(start), "days": days, "shop": shop, "injections": [],
            "audit_at": iso(audit_at), "family": family, "first_audit_at": None, "detect_within_hours": None,
            "expect": {"root_causes": ["none"], "findings_any": [], "healthy": True}}


# Shop sizes (server events a day) of the real-demand healthy set, smallest to largest.
SIZES_PER_DAY: tuple[float, ...] = (20, 80, 300, 1200, 5000, 20000, 50000)


def healthy_records(pixel_base: int) -> list[dict[str, Any]]:
    """Real-demand shops audited inside NAB's anomaly windows (and outside), and demand events."""
    rng = random.Random("capi-eval-healthy")
    out: list[dict[str, Any]] = []
    k = 0
    for series in SERIES:
        for window_start, window_end in anomaly_windows(series):
            k += 1
            size = SIZES_PER_DAY[k % (len(SIZES_PER_DAY) - 1)]  # the 50k shop is its own case below
            shop = draw_shop(rng, scale=scale_for_events_per_day(size))
            shop["demand_series"] = series
            span = (window_end - window_start).total_seconds() / 3600
            point = window_start + timedelta(hours=int(rng.uniform(0.3, 0.9) * span))
            tz = ZoneInfo(shop["_timezone"])
            local_target = (WEEK_START + timedelta(days=rng.randrange(7))).astimezone(tz).replace(tzinfo=None)
            weeks = shift_weeks_for(series, local_target, point)
            shop["demand_shift_weeks"] = weeks
            audit_at = (point + timedelta(weeks=weeks)).replace(minute=0, second=0, microsecond=0, tzinfo=tz)
            audit_at = audit_at.astimezone(UTC)
            out.append(_healthy(f"healthy_real_{series.split('_')[-1].lower()}_window{k:02d}.v1",
                                f"{series} demand inside a NAB anomaly window ({window_start:%Y-%m-%d %H:%M}"
                                f" - {window_end:%Y-%m-%d %H:%M}), a shop of about {size:g} events a day",
                                "healthy_real_demand", shop, audit_at, pixel_base + len(out)))
    for size in SIZES_PER_DAY:
        k += 1
        shop = draw_shop(rng, scale=scale_for_events_per_day(size))
        audit_at = WEEK_START + timedelta(hours=rng.randrange(7 * 24))
        shop["demand_shift_weeks"] = series_shift(rng, shop["demand_series"],
                                                  audit_at.astimezone(ZoneInfo(shop["_timezone"])))
        # The 50,000-a-day shop keeps one week of history: a month of it would not fit a CI worker.
        days = 8 if size >= 50000 else HISTORY_DAYS + 1
        out.append(_healthy(f"healthy_real_size_{int(size)}.v1", f"A real-demand shop of about {size:g} events a day",
                            "healthy_real_demand", shop, audit_at, pixel_base + len(out), days=days))
    events: tuple[tuple[str, str, float, tuple[int, int]], ...] = (
        ("storm", "A storm: demand falls about 60% on every side", 0.4, (4, 12)),
        ("storm", "A heat wave keeps people away: demand falls by half", 0.5, (6, 10)),
        ("outage", "A site outage: everything stops together", 0.0, (1, 3)),
        ("outage", "A hosting outage at night: everything stops", 0.0, (2, 4)),
        ("viral", "A viral post: demand jumps five-fold for a few hours", 5.0, (2, 6)),
        ("viral", "An influencer mention: demand triples", 3.0, (3, 8)),
        ("holiday", "A public holiday: half the usual demand all day", 0.5, (24, 24)),
        ("holiday", "A gift holiday: demand up 60% all day", 1.6, (24, 24)),
        ("sale", "A flash sale: demand doubles for the afternoon", 2.0, (4, 6)),
        ("sale", "The first hours after a two-day sale ended", 2.2, (48, 48)),
        # Not demand: a crawler makes the server-side integration send page views nobody's browser saw.
        ("bots", "A crawler walks the shop: server page views double, nothing else moves", 1.0, (2, 6)),
        ("bots", "An aggressive crawler: five times the usual server page views for hours", 5.0, (3, 10)),
    )
    for index, (kind, text, factor, (low, high)) in enumerate(events, start=1):
        shop = draw_shop(rng)
        length = rng.randint(low, high)
        event_start = WEEK_START + timedelta(hours=rng.randrange(24, 6 * 24))
        shop["demand_events"] = [{"kind": kind, "start": iso(event_start),
                                  "end": iso(event_start + timedelta(hours=length)), "multiplier": factor}]
        after = kind == "sale" and length == 48
        audit_at = event_start + timedelta(hours=length + 4 if after else min(length, rng.randint(1, length) + 1))
        shop["demand_shift_weeks"] = series_shift(rng, shop["demand_series"],
                                                  audit_at.astimezone(ZoneInfo(shop["_timezone"])))
        out.append(_healthy(f"healthy_event_{kind}_{index:02d}.v1", text, "healthy_demand_events", shop, audit_at,
                            pixel_base + len(out)))
    return out
