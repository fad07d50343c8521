"""The traffic model of a synthetic shop: how many of each event happen in an hour, and how often
the browser Pixel and the server integration each see them.

Everything here is a pure function of the configuration and a seeded ``random.Random``; the
generator (``tools.synth.generator``) turns the counts into individual events.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator

from tools.timeutil import as_utc, parse_iso


@dataclass(frozen=True)
class EventProfile:
    """One event name of the shop: volume at the evening peak and how each side sees it."""

    name: str
    peak_per_hour: float  # true events in the peak hour of a weekday, at scale 1.0
    server_share: float  # share of true events the shop's server sends (the CAPI side)
    em: float  # share of server events carrying a hashed email
    ph: float  # ... a hashed phone
    external_id: float  # ... a hashed customer id (logged-in users)
    path: str  # event_source_url path


# Peak total ~205 events/hour at scale 1.0; Lead averages ~0.3/h over a day.
EVENT_PROFILES: tuple[EventProfile, ...] = (
    EventProfile("PageView", 110.0, 0.86, 0.15, 0.05, 0.25, "/"),
    EventProfile("ViewContent", 55.0, 0.90, 0.18, 0.05, 0.25, "/products/{sku}"),
    EventProfile("AddToCart", 20.0, 0.94, 0.25, 0.08, 0.30, "/cart"),
    EventProfile("InitiateCheckout", 12.0, 0.96, 0.50, 0.20, 0.35, "/checkout"),
    EventProfile("Purchase", 8.0, 0.99, 0.70, 0.35, 0.45, "/checkout/thanks"),
    EventProfile("Lead", 0.55, 0.97, 0.95, 0.50, 0.20, "/newsletter"),
)
PROFILES_BY_NAME: dict[str, EventProfile] = {p.name: p for p in EVENT_PROFILES}

# Local hour -> share of the evening peak: quiet nights, a lunch bump, the peak at 20:00.
DAILY_SHAPE: tuple[float, ...] = (
    0.35, 0.20, 0.12, 0.08, 0.07, 0.09, 0.18, 0.32, 0.45, 0.55, 0.60, 0.65,
    0.70, 0.68, 0.62, 0.60, 0.62, 0.70, 0.82, 0.95, 1.00, 0.92, 0.72, 0.50,
)  # fmt: skip
# Monday..Friday multipliers; Saturday and Sunday use ShopConfig.weekend_factor.
WEEKDAY_SHAPE: tuple[float, ...] = (1.0, 1.0, 1.0, 1.02, 0.95)


class SalesSpike(BaseModel):
    """A sale (Black Friday, a newsletter blast): every event on both sides rises together."""

    start: datetime
    end: datetime
    multiplier: float = Field(3.0, gt=0)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value


DemandKind = Literal["sale", "holiday", "storm", "viral", "outage", "bots"]


class DemandEvent(BaseModel):
    """A real-world demand event: browser, server and orders move together (an outage stops all).

    ``bots`` is the exception that is not demand: a crawler walks the shop, and a server-side
    integration that sends a PageView or ViewContent for every page served sends them for the crawler
    too (no browser runs its Pixel, nobody buys, no cookie or customer key). ``multiplier`` is then
    the crawler's pages an hour as a multiple of the shop's usual PageViews at that hour.
    """

    kind: DemandKind
    start: datetime
    end: datetime
    multiplier: float = Field(1.0, ge=0)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value

    def factor(self) -> float:
        """What the event does to demand (a crawler does nothing to it)."""
        if self.kind == "bots":
            return 1.0
        return 0.0 if self.kind == "outage" else self.multiplier


# The mean of DAILY_SHAPE: a real demand series (mean 1) times this keeps a shop's daily volume.
MEAN_DAILY_SHAPE = sum(DAILY_SHAPE) / len(DAILY_SHAPE)


class ShopConfig(BaseModel):
    """What the synthetic shop looks like. Defaults give a modest, healthy mid-size shop."""

    pixel_id: str = "1234567890"
    timezone: str = "UTC"
    scale: float = Field(1.0, gt=0, description="Multiplies every volume")
    weekend_factor: float = Field(0.8, gt=0, description="<1 weekend dip, >1 weekend lift")
    sales_spikes: list[SalesSpike] = Field(default_factory=list)
    ad_blocker_share: float = Field(0.12, ge=0, le=1, description="Browser events hidden by blockers")
    browser_event_id_share: float = Field(1.0, ge=0, le=1, description="Pixel events sent with eventID")
    fbc_share: float = Field(0.30, ge=0, le=1, description="Visits that came from an ad click")
    fbp_share: float = Field(0.90, ge=0, le=1, description="Visits with the _fbp cookie")
    # Over-dispersion: the hourly traffic multiplier is Gamma(k, 1/k) (coefficient of variation 1/sqrt(k)).
    dispersion_k: float = Field(40.0, gt=0)
    # None: the shop sends each event as it happens; N: a batch job flushes every N minutes.
    batch_interval_minutes: int | None = Field(None, ge=1, le=24 * 60)
    currency: str = "EUR"
    domain: str = "shop.example"
    customers: int = Field(4000, ge=10, description="Size of the returning-customer pool")
    access_token: str = Field("shop-token", description="Token the shop sends with (never a real one)")
    # The realistic world (all off by default, so older scenarios keep their traffic).
    demand_series: str | None = Field(None, description="A real demand series (tools.synth.realdemand)")
    demand_shift_weeks: int = Field(0, description="Whole weeks between the series and simulated dates")
    demand_events: list[DemandEvent] = Field(default_factory=list)
    ad_blocker_drift: float = Field(0.0, ge=0, le=0.5, description="Amplitude of a slow ad-block drift")
    ad_blocker_drift_days: float = Field(23.0, gt=0, description="Period of that drift")
    # The device mix moves through the day (desktops, where blockers live, in office hours; phones at
    # night), so the blocked share has a daily cycle of this amplitude, highest at 14:00 local time.
    ad_blocker_daily: float = Field(0.0, ge=0, le=0.3, description="Amplitude of the blocked share's daily cycle")
    # Each hour's blocked share is Beta-distributed around its level with this concentration (None: no
    # extra noise): who visits in a given hour (a newsletter's readers, a forum's link) shifts it more
    # than coin flips would, so the browser/server ratio is over-dispersed as in real shops.
    ad_blocker_concentration: float | None = Field(None, gt=0, description="Hour-to-hour spread of the blocked share")
    batch_offset_minutes: int = Field(0, ge=0, lt=24 * 60, description="Flushes run at this minute offset")
    batch_jitter_seconds: int = Field(0, ge=0, le=1800, description="A flush starts up to this much late")
    full_user_data: bool = Field(False, description="Known customers also carry fn ln ge db ct st zp country")
    country: str = Field("us", min_length=2, max_length=2, description="The one country a shop sells to")

    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def traffic_factor(config: ShopConfig, hour: datetime) -> float:
    """Expected share of peak volume in an hour: daily shape x weekday (or a real demand series) x
    sales spikes x demand events x scale."""
    local = as_utc(hour).astimezone(config.tz())
    if config.demand_series is not None:
        from tools.synth.realdemand import multiplier

        shape = multiplier(config.demand_series, local, config.demand_shift_weeks) * MEAN_DAILY_SHAPE
    else:
        weekday = local.weekday()
        week = WEEKDAY_SHAPE[weekday] if weekday < 5 else config.weekend_factor
        shape = DAILY_SHAPE[local.hour] * week
    spike = 1.0
    for sale in config.sales_spikes:
        if sale.start <= hour < sale.end:
            spike *= sale.multiplier
    for event in config.demand_events:
        if event.start <= hour < event.end:
            spike *= event.factor()
    return shape * spike * config.scale


def ad_blocker_share(config: ShopConfig, hour: datetime) -> float:
    """Expected share of browser events hidden by blockers in an hour (drifting slowly and cycling
    through the day when configured)."""
    share = config.ad_blocker_share
    if config.ad_blocker_drift:
        phase = to_unix_hours(hour) / (config.ad_blocker_drift_days * 24)
        share += config.ad_blocker_drift * math.sin(2 * math.pi * phase)
    if config.ad_blocker_daily:
        local = as_utc(hour).astimezone(config.tz())
        share += config.ad_blocker_daily * math.cos(2 * math.pi * (local.hour + 0.5 - 14) / 24)
    return min(0.95, max(0.0, share))


def hourly_blocked_share(config: ShopConfig, hour: datetime, seed: int) -> float:
    """The blocked share of one hour: ``ad_blocker_share`` with the hour's own spread when configured
    (its own random stream, so the hour's events keep theirs)."""
    share = ad_blocker_share(config, hour)
    concentration = config.ad_blocker_concentration
    if concentration is None or not 0 < share < 1:
        return share
    rng = random.Random(f"capi-synth:{seed}:blocked:{to_unix_hours(hour):.0f}")
    return rng.betavariate(share * concentration, (1 - share) * concentration)


def to_unix_hours(when: datetime) -> float:
    return as_utc(when).timestamp() / 3600


def hourly_noise(config: ShopConfig, rng: random.Random) -> float:
    """A traffic multiplier with mean 1 shared by all events of an hour (busy and slow hours)."""
    k = config.dispersion_k
    return rng.gammavariate(k, 1.0 / k)


def draw_int(rng: random.Random, low: int, high: int) -> int:
    """Uniform integer in [low, high); cheaper than ``randrange`` in the per-event hot path."""
    return low + int(rng.random() * (high - low))


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw; exact (Knuth) for small means, normal approximation above 30."""
    if lam <= 0:
        return 0
    if lam >= 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, product = 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
