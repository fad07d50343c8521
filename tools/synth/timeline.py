"""A shop's whole period generated once, then seen as it was at any hour (no future leak).

``build_timeline`` simulates the healthy traffic of ``[start, end)`` and applies the injections once.
``received_by(at)``, ``orders_by(at)`` and ``meta_state_at(at)`` give what existed at ``at``: server
events the ledger had received, with only the delivery attempts made by then; orders taken; what
Meta had counted (events delivered by then, browser hits before then) and which tokens had expired.
An eval feeds the ledger and the simulator from these views hour by hour, so an audit at hour H never
sees a delivery, an order or a Meta count from after H.
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tools.synth.inject import Injection, apply_injections
from tools.synth.meta_state import SIM_READ_TOKEN, browser_hours, server_hours
from tools.synth.records import BrowserHit, Order, ServerEvent, to_iso
from tools.synth.shop import ShopConfig
from tools.synth.traffic import ShopTraffic, simulate_traffic
from tools.timeutil import as_utc


@dataclass
class Timeline:
    config: ShopConfig
    start: datetime
    end: datetime
    injections: list[Injection]
    traffic: ShopTraffic  # server sorted by received_at, browser by time, orders by created_at
    _received: list[datetime] = field(default_factory=list)
    _hit_times: list[datetime] = field(default_factory=list)
    _order_times: list[datetime] = field(default_factory=list)
    _delivered: list[tuple[datetime, int]] = field(default_factory=list)  # (delivered_at, server index)

    def __post_init__(self) -> None:
        self.traffic.server.sort(key=lambda record: record.received_at)
        self.traffic.browser.sort(key=lambda hit: hit.time)
        self.traffic.orders.sort(key=lambda order: order.created_at)
        self._received = [record.received_at for record in self.traffic.server]
        self._hit_times = [hit.time for hit in self.traffic.browser]
        self._order_times = [order.created_at for order in self.traffic.orders]
        self._delivered = sorted((record.delivered_at, i) for i, record in enumerate(self.traffic.server)
                                 if record.delivered_at is not None)

    @property
    def pixel_id(self) -> str:
        return self.config.pixel_id

    def received_count(self, at: datetime) -> int:
        """How many server events (a prefix of ``traffic.server``) the ledger had received by ``at``."""
        return bisect_right(self._received, as_utc(at))

    def received_by(self, at: datetime) -> list[ServerEvent]:
        """Copies of the server events received by ``at``, each with only the attempts made by then."""
        at = as_utc(at)
        out = []
        for record in self.traffic.server[: self.received_count(at)]:
            seen = copy.copy(record)
            if record.attempts:
                seen.attempts = [attempt for attempt in record.attempts if attempt.at <= at]
            out.append(seen)
        return out

    def browser_by(self, at: datetime) -> list[BrowserHit]:
        """Browser hits Meta had counted before ``at``."""
        return self.traffic.browser[: bisect_left(self._hit_times, as_utc(at))]

    def orders_by(self, at: datetime) -> list[Order]:
        """Orders the shop had taken before ``at``."""
        return self.traffic.orders[: bisect_left(self._order_times, as_utc(at))]

    def tokens_at(self, at: datetime) -> tuple[list[str], list[str]]:
        """(valid, expired) tokens at ``at``: a token revoked by an injection expires at its onset."""
        valid, expired = [SIM_READ_TOKEN, self.config.access_token], []
        for injection in self.injections:
            if injection.cause == "access_token_invalid" and injection.onset <= as_utc(at):
                revoked = [self.config.access_token]
                if injection.params.get("reads_expired"):
                    revoked.append(SIM_READ_TOKEN)
                valid = [t for t in valid if t not in revoked]
                expired += [t for t in revoked if t not in expired]
        return valid, expired

    def meta_state_at(self, at: datetime) -> dict[str, Any]:
        """The simulator state as Meta knew it at ``at`` (only deliveries made by then are counted)."""
        at = as_utc(at)
        valid, expired = self.tokens_at(at)
        server = self.traffic.server[: self.received_count(at)]  # server_hours drops later deliveries
        return {
            "now": to_iso(at),
            "tokens": {"valid": valid, "expired": expired},
            "pixels": {self.pixel_id: {"browser_hours": browser_hours(self.browser_by(at)),
                                       "server_hours": server_hours(server, at)}},
        }


    def meta_delta(self, since: datetime, at: datetime) -> dict[str, Any]:
        """What changed at Meta in ``(since, at]``, for a simulator already at ``since``:
        ``server_hours`` to add (events delivered in between), ``browser_hours`` to set (the hours that
        got hits, with every hit before ``at``), and tokens ``expired`` by ``at``."""
        since, at = as_utc(since), as_utc(at)
        low = bisect_right(self._delivered, (since, len(self.traffic.server)))
        high = bisect_right(self._delivered, (at, len(self.traffic.server)))
        delivered = [self.traffic.server[i] for _, i in self._delivered[low:high]]
        hits = self.traffic.browser[bisect_left(self._hit_times, since.replace(minute=0, second=0, microsecond=0)):
                                    bisect_left(self._hit_times, at)]
        return {"server_hours": server_hours(delivered, at), "browser_hours": browser_hours(hits),
                "expired": self.tokens_at(at)[1]}


def build_timeline(config: ShopConfig, *, start: datetime, end: datetime, seed: int,
                   injections: Sequence[Injection] = ()) -> Timeline:
    """Generate ``[start, end)`` once with the injections applied (same inputs, same timeline)."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ValueError("end must be after start")
    traffic = simulate_traffic(config, start=start, end=end, seed=seed)
    apply_injections(list(injections), traffic, config=config, now=end, seed=seed)
    return Timeline(config=config, start=start, end=end, injections=list(injections), traffic=traffic)
