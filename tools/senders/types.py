"""A change of a pixel's sender, as the audit and the chat read it (pure data, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tools.timeutil import parse_iso, to_iso

# version: the same sender in another version (or user agent); sender: a new sender took over most
# of the traffic; fields / match_keys: what one event carries changed; event_names: a new event name.
ChangeKind = Literal["version", "sender", "fields", "match_keys", "event_names"]
CHANGE_KINDS: tuple[str, ...] = ("version", "sender", "fields", "match_keys", "event_names")


@dataclass(frozen=True)
class SenderChange:
    at: datetime
    kind: str
    sender: str  # the sender's identity (plugin:woo-capi, sdk:facebook-php-business-sdk, ...)
    before: str
    after: str
    event_name: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"at": to_iso(self.at), "kind": self.kind, "before": self.before,
                                "after": self.after, "sender": self.sender}
        if self.event_name:
            body["event_name"] = self.event_name
        return body

    def describe(self) -> str:
        """One line for people: ``sender changed from woo-capi 3.2.1 to 3.3.0``."""
        what = {"version": "the sender changed", "sender": "a new sender took over",
                "fields": f"the fields of {self.event_name or 'events'} changed",
                "match_keys": f"the match keys of {self.event_name or 'events'} changed",
                "event_names": "a new event name appeared"}.get(self.kind, self.kind)
        before, after = self.before or "none", self.after or "none"
        if self.kind == "version":
            after = short_after(before, after)
        return f"{what} from {before} to {after}"


def short_after(before: str, after: str) -> str:
    """``woo-capi 3.3.0`` after ``woo-capi 3.2.1`` reads ``3.3.0``: the name is said once."""
    name_before, _, _ = before.rpartition(" ")
    name_after, _, version = after.rpartition(" ")
    return version if name_before and name_before == name_after and version else after


def change_from_json(body: dict[str, Any]) -> SenderChange:
    return SenderChange(at=parse_iso(body["at"]), kind=str(body["kind"]), sender=str(body.get("sender", "")),
                        before=str(body.get("before", "")), after=str(body.get("after", "")),
                        event_name=str(body.get("event_name", "")))
