"""Fake visitors and customers, and the match keys a server event carries for them.

All personal data here is obviously fake: emails under ``example.com``, phone numbers in the
fictional 555-01xx range, IPs from the documentation ranges (RFC 5737 / RFC 3849). Hashes are sha256
of Meta-normalized values (email trimmed and lower-cased, phone digits only with country code).
"""

from __future__ import annotations

import base64
import hashlib
import random

from tools.synth.shop import EventProfile, ShopConfig, draw_int

_USER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")
_AREA_CODES: tuple[int, ...] = tuple(range(201, 300))


def sha256_hex(normalized: str) -> str:
    """Lower-case hex sha256 of an already normalized value (what Meta expects)."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def raw_email(customer: int) -> str:
    """The customer's fake email as a shop might capture it (mixed case, stray spaces)."""
    return f" Customer.{customer}@Example.com "


def normalized_email(customer: int) -> str:
    return raw_email(customer).strip().lower()


def raw_phone(customer: int) -> str:
    """A fictional US number (555-01xx) formatted the way people type it."""
    area = _AREA_CODES[customer % len(_AREA_CODES)]
    return f"+1 ({area}) 555-01{customer // len(_AREA_CODES) % 100:02d}"


def normalized_phone(customer: int) -> str:
    return "".join(ch for ch in raw_phone(customer) if ch.isdigit())


def hashed_external_id(customer: int) -> str:
    return sha256_hex(f"cust-{customer}")


_FIRST = ("anna", "ben", "chloe", "david", "emma", "farid", "grace", "hugo", "ines", "jonas", "kenji", "lea")
_LAST = ("martin", "nguyen", "smith", "garcia", "muller", "rossi", "kowalski", "tanaka", "dubois", "silva")
# (city, state/region code, zip prefix): a one-country shop's customers live in a few places.
_PLACES = (("springfield", "il", "627"), ("portland", "or", "972"), ("austin", "tx", "787"),
           ("madison", "wi", "537"), ("columbus", "oh", "432"), ("raleigh", "nc", "276"))


def address_keys(rng: random.Random, config: ShopConfig, customer: int) -> dict[str, list[str]]:
    """Every other customer-information key Meta accepts, hashed from the customer's normalized fake
    values: fn, ln (usually), ct, st, zp (with an address), ge and db (rarely), country (always: a
    one-country shop sends the same hashed country for everyone)."""
    keys: dict[str, list[str]] = {"country": [sha256_hex(config.country.lower())]}
    if rng.random() < 0.8:
        keys["fn"] = [sha256_hex(_FIRST[customer % len(_FIRST)])]
        keys["ln"] = [sha256_hex(_LAST[customer // 7 % len(_LAST)])]
    if rng.random() < 0.6:
        city, state, prefix = _PLACES[customer % len(_PLACES)]
        keys["ct"] = [sha256_hex(city)]
        keys["st"] = [sha256_hex(state)]
        keys["zp"] = [sha256_hex(f"{prefix}{customer % 100:02d}")]
    if rng.random() < 0.15:
        keys["ge"] = [sha256_hex("f" if customer % 2 else "m")]
    if rng.random() < 0.1:
        keys["db"] = [sha256_hex(f"19{60 + customer % 40:02d}{1 + customer % 12:02d}{1 + customer % 28:02d}")]
    return keys


def _fbclid(rng: random.Random) -> str:
    # Case-sensitive base64url, like real click ids (never contains ".").
    return "IwAR" + base64.urlsafe_b64encode(rng.randbytes(30)).decode()


def _client_ip(rng: random.Random) -> str:
    # Mostly IPv6 (Meta prefers it), all from documentation ranges.
    if rng.random() < 0.6:
        return f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16) | 1:x}"
    return f"{_IPV4_NETS[draw_int(rng, 0, 3)]}.{draw_int(rng, 1, 255)}"


def build_user_data(
    rng: random.Random, config: ShopConfig, profile: EventProfile, event_ms: int
) -> tuple[dict[str, object], int | None]:
    """The ``user_data`` of one server event and the customer it belongs to (None: anonymous).

    Keys appear with the shares set in the shop config and the event's profile; fbc/fbp carry
    creation times in milliseconds before the event, as Meta's cookies do.
    """
    known = rng.random() < max(profile.em, profile.ph, profile.external_id)
    customer = draw_int(rng, 0, config.customers) if known else None
    user: dict[str, object] = {}
    if customer is not None:
        # Draws are conditional on being a known customer, so the marginal shares match the profile.
        top = max(profile.em, profile.ph, profile.external_id)
        if rng.random() < profile.em / top:
            user["em"] = [sha256_hex(normalized_email(customer))]
        if rng.random() < profile.ph / top:
            user["ph"] = [sha256_hex(normalized_phone(customer))]
        if rng.random() < profile.external_id / top:
            user["external_id"] = [hashed_external_id(customer)]
        if config.full_user_data:
            user.update(address_keys(rng, config, customer))
    user["client_ip_address"] = _client_ip(rng)
    user["client_user_agent"] = _USER_AGENTS[draw_int(rng, 0, len(_USER_AGENTS))]
    if rng.random() < config.fbc_share:
        click_ms = event_ms - draw_int(rng, 1_000, 7 * 86_400_000)
        user["fbc"] = f"fb.1.{click_ms}.{_fbclid(rng)}"
    if rng.random() < config.fbp_share:
        first_visit_ms = event_ms - draw_int(rng, 1_000, 90 * 86_400_000)
        user["fbp"] = f"fb.1.{first_visit_ms}.{draw_int(rng, 10**9, 10**10)}"
    return user, customer
