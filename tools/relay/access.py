"""Who may send events through the relay, and the record of those refused.

The relay is a public endpoint, so a request is accepted for a pixel only with:
- the pixel's configured Meta token (its own, or the operator's default): forwarded with that token,
  and Meta's answer kept, so an expired token still shows as ``access_token_invalid``;
- a relay key issued for the pixel (``tools.relay.keys``): forwarded with the pixel's configured token
  (events wait in the queue when it has none);
- any token, for a pixel that is not configured, only when the operator opted in
  (``CAPI_RELAY_ACCEPT_UNCONFIGURED``): forwarded with the caller's own token; the pixel is marked
  ``relay_unconfigured`` so that the operator's token is never used for it (no replay, no queue).
Anything else is refused with Meta's 190 answer, counted in ``relay_refusals`` (pixel, hour, sender
address, reason) and never stored, audited or replayed. Tokens are compared in constant time.

"Configured" means known to the operator: in the pixels TOML or already in the ledger through the
operator's own ingest, and not marked ``relay_unconfigured``. Refused requests create no pixel row, so
a stranger cannot make a pixel known.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from tools.ledger.models import RelayRefusal, table_of
from tools.ledger.rollups import dialect_insert
from tools.relay.keys import key_matches
from tools.timeutil import as_utc, floor_hour

AccessKind = Literal["pixel_token", "relay_key", "unconfigured", "refused"]
RefusalReason = Literal["bad_token", "unconfigured_pixel", "rate_limited"]
# How long the relay trusts its view of the configured pixels before reading it again.
PIXELS_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class KnownPixel:
    """A pixel the operator configured (or ingested), with the Meta token the agent uses for it."""

    token: str | None
    unconfigured: bool = False  # accepted earlier only through the opt-in: never the operator's token


@dataclass(frozen=True)
class Access:
    kind: AccessKind
    # The token to forward with (None: nothing to forward with; the events wait in the queue).
    forward_token: str | None = None
    reason: RefusalReason | None = None

    @property
    def allowed(self) -> bool:
        return self.kind != "refused"


@dataclass
class RelayAuth:
    """The relay's access rule (module docstring). ``pixels`` returns the known pixels; it is read at
    most every ``ttl`` seconds."""

    pixels: Callable[[], Mapping[str, KnownPixel]] = dict
    accept_unconfigured: bool = False
    ttl: float = PIXELS_TTL_SECONDS
    _cache: tuple[float, Mapping[str, KnownPixel]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def static(cls, tokens: Mapping[str, str | None], *, accept_unconfigured: bool = False) -> RelayAuth:
        """Fixed pixels and tokens (tests, benchmarks)."""
        known = {pixel_id: KnownPixel(token=token) for pixel_id, token in tokens.items()}
        return cls(pixels=lambda: known, accept_unconfigured=accept_unconfigured)

    def known(self) -> Mapping[str, KnownPixel]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > self.ttl:
                self._cache = (time.monotonic(), self.pixels())
            return self._cache[1]

    def decide(self, session_factory: Callable[[], Session], *, pixel_id: str, presented: str) -> Access:
        pixel = self.known().get(pixel_id)
        configured = pixel is not None and not pixel.unconfigured
        if configured and pixel is not None and pixel.token and hmac.compare_digest(
                presented.encode(), pixel.token.encode()):
            return Access("pixel_token", forward_token=presented)
        with session_factory() as session:
            if key_matches(session, pixel_id=pixel_id, presented=presented):
                return Access("relay_key", forward_token=pixel.token if configured and pixel else None)
        if configured:
            return Access("refused", reason="bad_token")
        if self.accept_unconfigured:
            return Access("unconfigured", forward_token=presented)
        return Access("refused", reason="unconfigured_pixel")


def record_refusal(session: Session, *, pixel_id: str, source: str, reason: RefusalReason, events: int,
                   at: datetime, requests: int = 1) -> None:
    """Count refused requests (and the events they carried) for the pixel, hour and sender. No commit."""
    at = as_utc(at)
    row = {"pixel_id": pixel_id[:64], "hour": floor_hour(at), "source": source[:64], "reason": reason,
           "requests": requests, "events": events, "last_at": at}
    table = table_of(RelayRefusal)
    insert = dialect_insert(session, table)
    session.execute(insert.values(row).on_conflict_do_update(
        index_elements=["pixel_id", "hour", "source", "reason"],
        set_={"requests": table.c.requests + insert.excluded.requests,
              "events": table.c.events + insert.excluded.events, "last_at": insert.excluded.last_at}))
