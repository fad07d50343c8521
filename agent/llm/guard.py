"""Defence in depth against raw PII reaching an LLM.

The ledger hashes PII at the door, so prompts should never hold any; this module catches what slips
through (an email pasted into a Slack question, an IP inside an error message, a phone number in a
custom_data field) before text leaves the process. It masks:

- email addresses -> ``[email]``
- phone-number-like digit runs (7-15 digits written with separators, or a leading ``+``) -> ``[phone]``
- IPv4 and IPv6 addresses -> ``[ip]``

What must pass untouched, because the analysis depends on it: 64-hex hashes, ISO timestamps and
dates, pixel ids and unix times (long digit runs with no separators), fbc/fbp values, counts and
decimal amounts.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
IP_MASK = "[ip]"

# Bounded repeats (RFC 5321 limits) keep the scan linear on long tool results with no "@" in them.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}")

# ISO-8601 dates and date-times. Their digit runs look like phone numbers ("2026-11-20"), so they
# are cut out of the text before the phone and IP passes run and put back untouched.
_ISO_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)"
)

# Candidates only; _looks_like_phone decides. The look-arounds keep the match from starting or
# ending inside a word, a hex hash, an fbc/fbp value ("fb.1.1763632000000.AbCd") or an event id.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w.+\-])"
    r"(?:\+\d{1,3}[ .\-]?)?"
    r"(?:\(\d{1,4}\)[ .\-]?)?"
    r"\d{1,15}(?:[ .\-]\d{1,15}){0,6}"
    r"(?![\w\-]|\.\d)"
)
_DIGIT_GROUP = re.compile(r"\d+")

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\d{1,3}(?:\.\d{1,3}){3})?(?:%\w+)?(?![\w:]|\.\d)"
)


class PromptLeak(ValueError):
    """Raised by :func:`assert_prompt_safe` when text bound for an LLM looks like it holds raw PII.

    The message names only the kinds found and their counts, never the values."""

    def __init__(self, kinds: dict[str, int]) -> None:
        self.kinds = dict(kinds)
        found = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        super().__init__(f"text bound for the LLM looks like it holds raw PII: {found}")


@dataclass
class ScrubReport:
    """How many values of each kind (``email``, ``phone``, ``ip``) were masked."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, other: ScrubReport) -> None:
        self.counts.update(other.counts)


def _looks_like_phone(candidate: str) -> bool:
    groups = _DIGIT_GROUP.findall(candidate)
    digits = sum(len(group) for group in groups)
    if not 7 <= digits <= 15:
        return False
    if candidate.startswith("+") or "(" in candidate:
        return True
    separators = len(groups) - 1
    if separators == 0:
        # A bare digit run is a pixel id, a unix time or a count: never masked.
        return False
    if separators == 1:
        # "555-1234" is a phone; "12345.67" is an amount and "1234567.89" a sum.
        head, tail = groups
        return 3 <= len(head) <= 4 and len(tail) == 4
    # Three or more groups ("650 555 1212", "06 12 34 56 78"); a group longer than 5 digits is
    # rare in written numbers and more likely a list of counts.
    return all(len(group) <= 5 for group in groups)


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_ipv4(candidate: str) -> bool:
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


def _masker(kind: str, token: str, accept: Callable[[str], bool],
            counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        if accept(match.group(0)):
            counts[kind] += 1
            return token
        return match.group(0)

    return replace


def _scrub_segment(segment: str, counts: Counter[str]) -> str:
    """Masks IPs, then phones, in text that holds no ISO timestamp (IPs first: a dotted IPv4
    would otherwise read as a phone number)."""
    segment = _IPV6_CANDIDATE.sub(_masker("ip", IP_MASK, _is_ipv6, counts), segment)
    segment = _IPV4.sub(_masker("ip", IP_MASK, _is_ipv4, counts), segment)
    return _PHONE_CANDIDATE.sub(_masker("phone", PHONE_MASK, _looks_like_phone, counts), segment)


def scrub_with_report(text: str) -> tuple[str, ScrubReport]:
    """Returns ``text`` with emails, phone numbers and IP addresses masked, and what was masked."""
    report = ScrubReport()

    def mask_email(_: re.Match[str]) -> str:
        report.counts["email"] += 1
        return EMAIL_MASK

    text = _EMAIL.sub(mask_email, text)
    # re.split with a capturing group alternates: text, timestamp, text, timestamp, ...
    parts = _ISO_TIMESTAMP.split(text)
    for index in range(0, len(parts), 2):
        parts[index] = _scrub_segment(parts[index], report.counts)
    return "".join(parts), report


def scrub(text: str) -> str:
    """Returns ``text`` with emails, phone-like digit runs and IPv4/IPv6 addresses masked.

    Hashes, ISO timestamps, pixel ids and counts pass unchanged."""
    return scrub_with_report(text)[0]


def assert_prompt_safe(text: str) -> None:
    """Raises :class:`PromptLeak` when ``text`` holds anything :func:`scrub` would mask."""
    _, report = scrub_with_report(text)
    if report.total:
        raise PromptLeak(dict(report.counts))
