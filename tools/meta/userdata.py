"""Prepare a server event's ``user_data`` for storage and sending: hash raw PII, recognise what is
already hashed, and record every quality problem per field (the ``hashing`` check counts them).

Whatever ``prepare_user_data`` returns in ``user_data`` is safe to store: raw PII never survives it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.meta.normalize import (
    HASHED_FIELDS,
    MUST_NOT_HASH,
    PLACEHOLDER_HASHES,
    NormalizationError,
    is_placeholder_hash,
    is_placeholder_value,
    looks_sha256,
    normalize_field,
    sha256_hex,
)

# fb.{subdomainIndex}.{creationTime in ms, 13 digits}.{fbclid | random}[.{language token}]
# The optional 5th part is added by Meta's param builder: a 2-char token or an 8-char base64url one.
_COOKIE_SUFFIX = r"(?:\.(?:AQ|Ag|Aw|BA|BQ|Bg|[A-Za-z0-9_-]{8}))?"
FBC_RE = re.compile(r"^fb\.\d\.\d{13}\.[A-Za-z0-9_-]+" + _COOKIE_SUFFIX + r"$")
FBP_RE = re.compile(r"^fb\.\d\.\d{13}\.\d+" + _COOKIE_SUFFIX + r"$")
_COOKIE_FIELDS: dict[str, re.Pattern[str]] = {"fbc": FBC_RE, "fbp": FBP_RE}
# Hex of another digest (md5 32, sha1 40, sha224 56, ...) or a truncated hash. Raw phone numbers
# (at most 15 digits), zips and YYYYMMDD dates are shorter than this, so they are not mistaken for it.
_OTHER_HEX_RE = re.compile(r"^[0-9a-fA-F]{16,}$")
# Nearly every value an integration sends for a hashed field is already lower-case SHA-256 hex.
_LOWER_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def is_valid_fbc(value: str) -> bool:
    """``fb.{subdomainIndex}.{creationTime ms}.{fbclid}`` with an optional language token (4 or 5 parts)."""
    return bool(FBC_RE.match(value))


def is_valid_fbp(value: str) -> bool:
    """``fb.{subdomainIndex}.{creationTime ms}.{random}`` with an optional language token (4 or 5 parts)."""
    return bool(FBP_RE.match(value))


@dataclass(frozen=True)
class PreparedUserData:
    """``user_data`` made safe to store and send, and what was wrong with it, per field."""

    user_data: dict[str, str | list[str]]
    keys_present: frozenset[str]
    raw: frozenset[str]
    placeholder: frozenset[str]
    uppercase_hex: frozenset[str]
    not_sha256: frozenset[str]
    must_not_hash: frozenset[str]
    malformed: frozenset[str]
    invalid: frozenset[str]
    top_values: dict[str, str]


class _Flags:
    """Field names per problem while one ``user_data`` is prepared (plain slots: made per event)."""

    __slots__ = ("invalid", "keys_present", "malformed", "must_not_hash", "not_sha256", "placeholder",
                 "raw", "top_values", "uppercase_hex")

    def __init__(self) -> None:
        self.keys_present: set[str] = set()
        self.raw: set[str] = set()
        self.placeholder: set[str] = set()
        self.uppercase_hex: set[str] = set()
        self.not_sha256: set[str] = set()
        self.must_not_hash: set[str] = set()
        self.malformed: set[str] = set()
        self.invalid: set[str] = set()
        self.top_values: dict[str, str] = {}


def _as_strings(value: Any) -> list[str] | None:
    """A field's values as strings (numbers are accepted: ``zp: 94035``); None when unusable."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            return None
        out.append(item if isinstance(item, str) else str(item))
    return out


def _prepare_hashed(
    name: str, value: str, flags: _Flags, *, default_country: str, repair: bool
) -> str | None:
    """One value of a field Meta wants hashed -> the lower-case hex to keep, or None to drop it."""
    if len(value) == 64 and value not in PLACEHOLDER_HASHES and _LOWER_SHA256_RE.fullmatch(value):
        # Fast path, same outcome as the general one below for a clean, usable hash.
        flags.top_values.setdefault(name, value)
        flags.keys_present.add(name)
        return value
    text = value.strip()
    if looks_sha256(text):
        digest = text.lower()
        if digest != text:
            flags.uppercase_hex.add(name)
        flags.top_values.setdefault(name, digest)
        if is_placeholder_hash(digest):
            flags.placeholder.add(name)
            return None if repair else digest
        flags.keys_present.add(name)
        return digest
    if name != "external_id" and _OTHER_HEX_RE.match(text):
        # Hashed with the wrong algorithm or truncated: no PII left, but Meta cannot match it.
        flags.not_sha256.add(name)
        return None if repair else text.lower()
    flags.raw.add(name)
    if is_placeholder_value(text):
        flags.placeholder.add(name)
        digest = sha256_hex(text.lower())
        flags.top_values.setdefault(name, digest)
        return None if repair else digest
    try:
        normalized = normalize_field(name, text, default_country=default_country)
    except NormalizationError:
        flags.invalid.add(name)
        return None
    digest = sha256_hex(normalized)
    flags.top_values.setdefault(name, digest)
    if is_placeholder_hash(digest):
        flags.placeholder.add(name)
        return None if repair else digest
    flags.keys_present.add(name)
    return digest


def _prepare_unhashed(name: str, value: str, flags: _Flags, *, repair: bool) -> str | None:
    """One value of a must-not-hash field: kept exactly as sent, except a malformed fbc/fbp in repair."""
    # A value shorter than 64 characters cannot be a SHA-256 hex (user agents, IPs, cookies are).
    hashed = len(value) >= 64 and looks_sha256(value)
    if hashed:
        flags.must_not_hash.add(name)
    pattern = _COOKIE_FIELDS.get(name)
    if pattern is not None and not pattern.match(value):
        flags.malformed.add(name)
        return None if repair else value
    if value.strip() and not hashed:
        flags.keys_present.add(name)
    return value


def prepare_user_data(
    user_data: Mapping[str, Any], *, default_country: str = "US", repair: bool = False
) -> PreparedUserData:
    """Hash raw PII and flag every problem, field by field.

    Promises: fields Meta wants hashed come out as lower-case SHA-256 hex (raw values normalized by
    Meta's rules and hashed; upper-case hex lower-cased; hashes never hashed twice); raw values that
    cannot be normalized, and keys Meta does not know, are dropped and flagged ``invalid`` (so no raw
    PII is ever kept). Must-not-hash fields are returned untouched. With ``repair=True`` values Meta
    cannot use are also dropped: malformed ``fbc``/``fbp`` (which would reject the whole batch),
    placeholder hashes and non-SHA-256 hex. A field keeps its shape (string or list); a field left
    with no value is removed.
    """
    flags = _Flags()
    prepared: dict[str, str | list[str]] = {}
    for name, value in user_data.items():
        if name not in HASHED_FIELDS and name not in MUST_NOT_HASH:
            flags.invalid.add(name)
            continue
        values = [value] if value.__class__ is str else _as_strings(value)
        if values is None:
            flags.invalid.add(name)
            continue
        kept: list[str] = []
        hashed_field = name in HASHED_FIELDS
        for item in values:
            if hashed_field:
                result = _prepare_hashed(name, item, flags, default_country=default_country, repair=repair)
            else:
                result = _prepare_unhashed(name, item, flags, repair=repair)
            if result is not None:
                kept.append(result)
        if not kept:
            continue
        if isinstance(value, list | tuple):
            prepared[name] = kept
        else:
            prepared[name] = kept[0]
    return PreparedUserData(
        user_data=prepared,
        keys_present=_frozen(flags.keys_present),
        raw=_frozen(flags.raw),
        placeholder=_frozen(flags.placeholder),
        uppercase_hex=_frozen(flags.uppercase_hex),
        not_sha256=_frozen(flags.not_sha256),
        must_not_hash=_frozen(flags.must_not_hash),
        malformed=_frozen(flags.malformed),
        invalid=_frozen(flags.invalid),
        top_values=dict(flags.top_values),
    )


_NO_NAMES: frozenset[str] = frozenset()


def _frozen(names: set[str]) -> frozenset[str]:
    return frozenset(names) if names else _NO_NAMES
