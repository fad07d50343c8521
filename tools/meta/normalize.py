"""Normalize and hash Meta customer-information parameters (``user_data``) by Meta's documented rules.

Meta matches on the SHA-256 (lower-case hex of the UTF-8 bytes) of a *normalized* value, so the
normalization must be exactly Meta's. Where Meta's documentation and the official Python SDK differ,
this module follows the documentation (the SDK drops the phone country code, keeps zip+4, does not
map US state names and does not hash ``external_id``; Meta's documented example hashes need all four).

Errors never echo the raw value: it is PII.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import unicodedata
from datetime import date, datetime

import phonenumbers
import pycountry
import us

# Meta: "must hash". external_id is "hashing recommended": we hash it so that ids are never stored raw.
HASHED_FIELDS: frozenset[str] = frozenset(
    {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"}
)
# Meta: "do not hash". These are matched as sent (cookies, ids, network data).
MUST_NOT_HASH: frozenset[str] = frozenset(
    {
        "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id",
        "lead_id", "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid",
        "ig_account_id", "ig_sid",
    }
)

# Values integrations send when they have nothing (JS "undefined", "[object Object]", test addresses).
# Compared case-insensitively on the raw value; hashed in several casings below because broken
# integrations often hash without lower-casing first.
PLACEHOLDER_VALUES: frozenset[str] = frozenset(
    {
        "", "null", "undefined", "none", "nil", "nan", "0", "n/a", "-", "false", "true",
        "[object object]", "test@test.com", "test@example.com", "example@example.com",
        "email@example.com", "user@example.com", "noemail@example.com", "no@email.com",
    }
)


def sha256_hex(normalized: str) -> str:
    """SHA-256 of the UTF-8 bytes of an already-normalized value, as lower-case hex."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _casings(value: str) -> set[str]:
    return {value, value.upper(), value.title(), value.capitalize()} | (
        {"[object Object]"} if value == "[object object]" else set()
    )


PLACEHOLDER_HASHES: frozenset[str] = frozenset(
    sha256_hex(casing) for value in PLACEHOLDER_VALUES for casing in _casings(value)
)

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class NormalizationError(ValueError):
    """A value that cannot be normalized. The message names the field and the reason, never the value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def looks_sha256(value: str) -> bool:
    """True for exactly 64 hex characters (either case), surrounding whitespace ignored."""
    return bool(_SHA256_RE.match(value.strip()))


def is_placeholder_hash(value: str) -> bool:
    """True when a hash (either case) is the SHA-256 of a placeholder such as "", "null" or test@test.com."""
    return value.strip().lower() in PLACEHOLDER_HASHES


def is_placeholder_value(value: str) -> bool:
    """True when a raw value is a placeholder ("", "null", "undefined", "[object Object]", ...)."""
    return value.strip().lower() in PLACEHOLDER_VALUES


def _strip_punctuation(text: str, *, keep_spaces: bool) -> str:
    """Drop Unicode punctuation and symbols (and whitespace unless kept); letters stay UTF-8 (é stays é)."""
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "PS":
            continue
        if char.isspace():
            if keep_spaces:
                out.append(" ")
            continue
        out.append(char)
    return " ".join("".join(out).split()) if keep_spaces else "".join(out)


def _lower_text(value: str) -> str:
    # NFC so that "e" + combining accent and the precomposed "é" hash the same.
    return unicodedata.normalize("NFC", value).strip().lower()


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _normalize_email(value: str) -> str:
    email = _lower_text(value)
    if not _EMAIL_RE.match(email):
        raise NormalizationError("em", "not an email address")
    return email


def _normalize_phone(value: str, default_country: str) -> str:
    """E.164 digits without '+': country code included, no leading zeros (Meta: 16505551212)."""
    text = value.strip()
    digits = re.sub(r"\D", "", text)
    if not 5 <= len(digits) <= 17:
        raise NormalizationError("ph", "not a phone number (wrong number of digits)")
    candidates: list[phonenumbers.PhoneNumber] = []
    region = default_country.upper()
    with contextlib.suppress(phonenumbers.NumberParseException):
        candidates.append(phonenumbers.parse(text, region))
    if not text.startswith(("+", "00")):
        # Digits that already carry a country code but no '+' (e.g. 447700900123 with a US default).
        with contextlib.suppress(phonenumbers.NumberParseException):
            candidates.append(phonenumbers.parse("+" + digits, None))
    for accept in (phonenumbers.is_valid_number, phonenumbers.is_possible_number):
        for number in candidates:
            if accept(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    raise NormalizationError("ph", f"not a valid phone number for default country {region}")


def _normalize_name(field: str, value: str) -> str:
    # Meta: lower-case, no punctuation, UTF-8 letters kept. It says nothing about inner spaces
    # ("Mary Ann"), so they are kept, collapsed to one.
    name = _strip_punctuation(_lower_text(value), keep_spaces=True)
    if not name:
        raise NormalizationError(field, "no letters left after removing punctuation")
    return name


def _normalize_city(value: str) -> str:
    city = _strip_punctuation(_lower_text(value), keep_spaces=False)
    if not city:
        raise NormalizationError("ct", "no letters left after removing punctuation and spaces")
    return city


@functools.cache
def _us_state_codes() -> dict[str, str]:
    """US state and territory names and codes (compact, lower-case) -> 2-letter code; built on first use."""
    states = [*us.states.STATES_AND_TERRITORIES, us.states.DC]
    codes: dict[str, str] = {}
    for state in states:
        codes[_strip_punctuation(state.name.lower(), keep_spaces=False)] = state.abbr.lower()
        codes[state.abbr.lower()] = state.abbr.lower()
    codes["washingtondc"] = "dc"
    return codes


def _normalize_state(value: str) -> str:
    """US states (names or codes) -> 2-letter code; elsewhere lower-case, no punctuation or spaces."""
    compact = _strip_punctuation(_lower_text(value), keep_spaces=False)
    if not compact:
        raise NormalizationError("st", "no letters left after removing punctuation and spaces")
    return _us_state_codes().get(compact, compact)


_US_ZIP_RE = re.compile(r"^(\d{5})(?:-?\d{4})?$")


def _normalize_zip(value: str, default_country: str) -> str:
    """Lower-case, no spaces or dashes; US zip+4 keeps the first 5 digits (UK: M1 1AE -> m11ae)."""
    text = _lower_text(value)
    compact_dash = re.sub(r"\s+", "", text)
    match = _US_ZIP_RE.match(compact_dash)
    # "94035-1234" is unmistakably zip+4; nine bare digits only when the default country is the US.
    if match and ("-" in compact_dash or len(compact_dash) == 5 or default_country.upper() == "US"):
        return match.group(1)
    compact = re.sub(r"[\s\-]", "", text)
    if not compact or not compact.isalnum():
        raise NormalizationError("zp", "not a postal code")
    return compact


_COUNTRY_ALIASES: dict[str, str] = {
    "uk": "gb", "unitedkingdom": "gb", "greatbritain": "gb", "england": "gb", "scotland": "gb",
    "wales": "gb", "northernireland": "gb", "america": "us", "unitedstatesofamerica": "us",
    "russia": "ru", "turkey": "tr", "holland": "nl", "thenetherlands": "nl", "ivorycoast": "ci",
    "uae": "ae", "southkorea": "kr", "northkorea": "kp", "vietnam": "vn", "laos": "la",
    "syria": "sy", "tanzania": "tz", "moldova": "md", "macedonia": "mk", "palestine": "ps",
}


def _normalize_country(value: str) -> str:
    """Country names or ISO codes (alpha-2, alpha-3, numeric) -> ISO 3166-1 alpha-2, lower-case."""
    text = _lower_text(value)
    compact = _strip_punctuation(text, keep_spaces=False)
    if compact in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[compact]
    for candidate in (text, compact, _strip_punctuation(text, keep_spaces=True)):
        if not candidate:
            continue
        try:
            return str(pycountry.countries.lookup(candidate).alpha_2).lower()
        except LookupError:
            continue
    raise NormalizationError("country", "not a country name or ISO 3166 code")


_DATE_FORMATS_YEAR_FIRST = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d")
_DATE_FORMATS_MONTH_FIRST = ("%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y")
_DATE_FORMATS_DAY_FIRST = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y")
_BIRTH_DATE_MIN = date(1900, 1, 1)
_BIRTH_DATE_MAX = date(2100, 12, 31)
_DATE_FORMATS_WORDS = ("%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y")


def _normalize_birth_date(value: str, default_country: str) -> str:
    """Common date spellings -> YYYYMMDD. Ambiguous 02/03/1990 is month-first for US, else day-first."""
    text = _lower_text(value)
    if "t" in text and re.match(r"^\d{4}-\d{2}-\d{2}t", text):
        text = text[:10]  # ISO date-time: the date part is the birth date
    words = re.sub(r"[,\s]+", " ", text).strip()
    numeric_orders = (
        (_DATE_FORMATS_MONTH_FIRST, _DATE_FORMATS_DAY_FIRST)
        if default_country.upper() in {"US", "PH", "CA", "FM"}
        else (_DATE_FORMATS_DAY_FIRST, _DATE_FORMATS_MONTH_FIRST)
    )
    formats = (*_DATE_FORMATS_YEAR_FIRST, *numeric_orders[0], *numeric_orders[1], *_DATE_FORMATS_WORDS)
    for fmt in formats:
        try:
            parsed = datetime.strptime(words, fmt).date()
        except ValueError:
            continue
        # A fixed range rather than "not after today": normalization must not depend on the clock.
        if not _BIRTH_DATE_MIN <= parsed <= _BIRTH_DATE_MAX:
            raise NormalizationError("db", "birth date out of range (years 1900 to 2100)")
        return parsed.strftime("%Y%m%d")
    raise NormalizationError("db", "not a recognised date (expected e.g. YYYY-MM-DD or MM/DD/YYYY)")


_GENDERS: dict[str, str] = {
    "f": "f", "female": "f", "woman": "f", "w": "f",
    "m": "m", "male": "m", "man": "m",
}


def _normalize_gender(value: str) -> str:
    gender = _GENDERS.get(_strip_punctuation(_lower_text(value), keep_spaces=False))
    if gender is None:
        raise NormalizationError("ge", "gender must be f or m (or female / male)")
    return gender


def _normalize_external_id(value: str) -> str:
    external_id = value.strip()
    if not external_id:
        raise NormalizationError("external_id", "empty")
    return external_id


def normalize_field(field: str, value: str, *, default_country: str = "US") -> str:
    """Normalize one raw customer-information value by Meta's rules, ready for ``sha256_hex``.

    ``field`` is a user_data key that Meta wants hashed (``HASHED_FIELDS``). ``default_country``
    (ISO alpha-2) is used for phone numbers without a country code, for 9-digit US zip codes and to
    read ambiguous numeric birth dates. Raises ``NormalizationError`` for an unknown or must-not-hash
    field, for a value that is already a SHA-256, and for a value that cannot be normalized.
    """
    if field in MUST_NOT_HASH:
        raise NormalizationError(field, "must not be hashed or normalized; Meta wants it exactly as sent")
    if field not in HASHED_FIELDS:
        raise NormalizationError(field, "not a customer-information field that Meta hashes")
    if not isinstance(value, str):
        raise NormalizationError(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise NormalizationError(field, "empty value")
    if looks_sha256(value):
        raise NormalizationError(field, "already a SHA-256 hash; hashing it again would break matching")
    if field == "em":
        return _normalize_email(value)
    if field == "ph":
        return _normalize_phone(value, default_country)
    if field in ("fn", "ln"):
        return _normalize_name(field, value)
    if field == "ct":
        return _normalize_city(value)
    if field == "st":
        return _normalize_state(value)
    if field == "zp":
        return _normalize_zip(value, default_country)
    if field == "country":
        return _normalize_country(value)
    if field == "db":
        return _normalize_birth_date(value, default_country)
    if field == "ge":
        return _normalize_gender(value)
    return _normalize_external_id(value)
