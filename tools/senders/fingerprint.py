"""What a sender's software looks like, read from a request (HTTP ``User-Agent``, ``partner_agent``) or
from an import line's ``sender`` object, and the shape of the events it sends (names of fields and
match keys, never their values).

Meta's Business SDKs identify themselves as ``fbbizsdk-<language>-v<version>`` (for example
``fbbizsdk-php-v17.0.0``, ``fbbizsdk-nodejs-v18.0.1``, ``fbbizsdk-python-v19.0.0``); they are named
here ``facebook-<language>-business-sdk``. ``partner_agent`` (a parameter of the /events request) is
the platform or plugin, usually ``<name>-<version>``.

The sender's ``User-Agent`` is the software that posts to /events; the customer's browser is
``user_data.client_user_agent``, customer data that is never read here. Everything kept is cleaned
(``clean_text``) so that a token or an e-mail address pasted into a header never reaches the ledger.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 160
MAX_KEYS = 64
SDK_RE = re.compile(r"\bfbbizsdk-([a-z]+)-v?(\d+(?:\.\d+)*)", re.IGNORECASE)
# "<name>-<version>", "<name>/<version>", "<name> <version>" or "<name>_<version>".
NAMED_VERSION_RE = re.compile(r"^(?P<name>.*?[A-Za-z][^\s/]*?)[-_/ ]v?(?P<version>\d+(?:\.\d+)*[\w.+-]*)$")
PRODUCT_RE = re.compile(r"^([A-Za-z][\w.+-]*)(?:/(\S+))?")
KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# A long run of letters and digits is a token or a hash, never a software name: dropped.
SECRET_RE = re.compile(r"[A-Za-z0-9_\-]{32,}")
EMAIL_RE = re.compile(r"\S+@\S+")
ENVELOPE_FIELDS = ("user_agent", "partner_agent", "sdk", "sdk_version", "plugin", "plugin_version")


def clean_text(value: Any) -> str | None:
    """A header or name as it may be stored: printable, short, without token-like runs or e-mails."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if ch.isprintable())
    text = EMAIL_RE.sub("[removed]", SECRET_RE.sub("[removed]", text)).strip()
    return text[:MAX_TEXT] or None


@dataclass(frozen=True)
class SenderInfo:
    """The sender's software identity (no customer data: names and versions only)."""

    user_agent: str | None = None
    sdk: str | None = None
    sdk_version: str | None = None
    partner_agent: str | None = None
    plugin: str | None = None
    plugin_version: str | None = None

    @property
    def identity(self) -> str:
        """Who sends, without versions: changes are tracked per identity, so a browser-side tag and a
        server plugin that alternate normally are two senders, not a change every request."""
        if self.plugin:
            return f"plugin:{self.plugin.lower()}"
        if self.sdk:
            return f"sdk:{self.sdk.lower()}"
        if self.user_agent:
            product = PRODUCT_RE.match(self.user_agent)
            return f"agent:{(product.group(1) if product else self.user_agent).lower()}"
        return "unknown"

    @property
    def label(self) -> str:
        """How a person names it: ``woo-capi 3.3.0``, ``facebook-php-business-sdk 17.0.0``."""
        if self.plugin:
            return " ".join(p for p in (self.plugin, self.plugin_version) if p)
        if self.sdk:
            return " ".join(p for p in (self.sdk, self.sdk_version) if p)
        return self.user_agent or "unknown sender"

    def as_json(self) -> dict[str, str]:
        return {name: value for name in ENVELOPE_FIELDS if (value := getattr(self, name)) is not None}

    def key(self) -> str:
        """The fingerprint of the software (identity, versions, user agent)."""
        canonical = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_sdk(user_agent: str | None) -> tuple[str | None, str | None]:
    """(``facebook-<language>-business-sdk``, version) when the user agent is one of Meta's SDKs."""
    found = SDK_RE.search(user_agent or "")
    if found is None:
        return None, None
    return f"facebook-{found.group(1).lower()}-business-sdk", found.group(2)


def parse_partner_agent(partner_agent: str | None) -> tuple[str | None, str | None]:
    """(plugin name, version) from ``partner_agent`` (``woo-capi-3.3.0`` -> woo-capi, 3.3.0)."""
    if not partner_agent:
        return None, None
    found = NAMED_VERSION_RE.match(partner_agent)
    if found is None:
        return partner_agent, None
    return found.group("name"), found.group("version")


def sender_info(*, user_agent: Any = None, partner_agent: Any = None, sdk: Any = None,
                sdk_version: Any = None, plugin: Any = None, plugin_version: Any = None) -> SenderInfo:
    """The fingerprint's identity part; names given explicitly win over what is parsed."""
    agent, partner = clean_text(user_agent), clean_text(partner_agent)
    parsed_sdk, parsed_sdk_version = parse_sdk(agent)
    parsed_plugin, parsed_plugin_version = parse_partner_agent(partner)
    return SenderInfo(
        user_agent=agent, partner_agent=partner,
        sdk=clean_text(sdk) or parsed_sdk, sdk_version=clean_text(sdk_version) or parsed_sdk_version,
        plugin=clean_text(plugin) or parsed_plugin,
        plugin_version=clean_text(plugin_version) or parsed_plugin_version)


def sender_from_request(user_agent: str | None, params: Mapping[str, Any]) -> SenderInfo:
    """The sender of one /events request: its HTTP ``User-Agent`` and its ``partner_agent``."""
    return sender_info(user_agent=user_agent, partner_agent=params.get("partner_agent"))


def sender_from_envelope(value: Any, *, error: Callable[[str], Exception] = ValueError) -> SenderInfo | None:
    """The optional ``sender`` object of an import line; ``error(reason)`` is raised for a bad one
    (the reason names the field, never its value)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise error("sender must be an object")
    unknown = sorted(set(value) - set(ENVELOPE_FIELDS))
    if unknown:
        raise error(f"sender has unknown field(s) {', '.join(k for k in unknown if KEY_RE.match(str(k)))}"
                    .rstrip() + f" (expected {', '.join(ENVELOPE_FIELDS)})")
    for name in ENVELOPE_FIELDS:
        if value.get(name) is not None and not isinstance(value[name], str):
            raise error(f"sender.{name} must be a string")
    info = sender_info(**{name: value.get(name) for name in ENVELOPE_FIELDS})
    return info if info.as_json() else None


@dataclass(frozen=True)
class EventShape:
    """The names an event uses: top-level and custom_data fields, and user_data match keys."""

    event_name: str
    fields: frozenset[str]
    match_keys: frozenset[str]


def _keys(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, Mapping):
        return set()
    return {prefix + str(key) for key in list(value)[:MAX_KEYS] if KEY_RE.match(str(key))}


def event_shape(event: Any) -> EventShape | None:
    """The shape of one server event (None for anything that is not an event with a name)."""
    if not isinstance(event, Mapping) or not isinstance(event.get("event_name"), str):
        return None
    name = clean_text(event["event_name"])
    if not name:
        return None
    fields = _keys(event) - {"user_data", "custom_data"}
    fields |= _keys(event.get("custom_data"), "custom_data.")
    user_data = event.get("user_data")
    match_keys = {key for key in _keys(user_data) if user_data[key] not in (None, "", [])} \
        if isinstance(user_data, Mapping) else set()
    return EventShape(event_name=name[:64], fields=frozenset(fields), match_keys=frozenset(match_keys))
