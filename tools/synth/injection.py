"""An injected root cause (an entry of a scenario's ``injections``) and helpers the cause
modules share."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from tools.diagnosis.types import ROOT_CAUSES
from tools.synth.records import Attempt, ServerEvent
from tools.synth.shop import ShopConfig
from tools.synth.traffic import new_fbtrace_id
from tools.timeutil import HOUR, parse_iso

# Causes a scenario can inject: every catalogue cause but "none" and the diagnosis' own verdicts that are
# not causes ("undetermined": the data cannot tell yet).
NOT_INJECTABLE = frozenset({"none", "undetermined"})
INJECTABLE_CAUSES: tuple[str, ...] = tuple(cause for cause in ROOT_CAUSES if cause not in NOT_INJECTABLE)


class Injection(BaseModel):
    """One root cause switched on at ``onset`` (until ``end``, or for good) for some events (None: all)."""

    cause: str
    onset: datetime
    end: datetime | None = None
    events: list[str] | None = None
    magnitude: float | None = Field(None, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    # A gradual onset: the affected share grows linearly from 0 at ``onset`` to ``share()`` this many
    # hours later (for the causes that drop or alter a share of events).
    ramp_hours: float | None = Field(None, gt=0)

    @field_validator("cause")
    @classmethod
    def _known_cause(cls, value: str) -> str:
        if value not in INJECTABLE_CAUSES:
            raise ValueError(f"unknown root cause {value!r}; expected one of {', '.join(INJECTABLE_CAUSES)}")
        return value

    @field_validator("onset", "end", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value

    def active(self, when: datetime) -> bool:
        end = (
            self.end
            if self.end is not None
            else (self.onset + HOUR if self.cause == "missed_batch" else None)
        )
        return when >= self.onset and (end is None or when < end)

    def covers(self, event_name: str) -> bool:
        return self.events is None or event_name in self.events

    def share(self) -> float:
        return 1.0 if self.magnitude is None else min(1.0, self.magnitude)

    def share_at(self, when: datetime) -> float:
        """The affected share at ``when`` (ramping up when the onset is gradual)."""
        if self.ramp_hours is None:
            return self.share()
        progress = (when - self.onset).total_seconds() / (self.ramp_hours * 3600)
        return self.share() * max(0.0, min(1.0, progress))


@dataclass
class InjectionContext:
    config: ShopConfig
    now: datetime
    rng: random.Random
    valid_tokens: list[str] = field(default_factory=list)
    expired_tokens: list[str] = field(default_factory=list)


def touches(inj: Injection, ctx: InjectionContext, record: ServerEvent) -> bool:
    """Whether an injection touches a server event (by when it really happened)."""
    return (inj.active(record.true_time) and inj.covers(record.name)
            and ctx.rng.random() < inj.share_at(record.true_time))


def first_attempt_at(group: list[ServerEvent]) -> datetime | None:
    attempts = group[0].attempts
    return attempts[0].at if attempts else None


def fail_requests(groups: list[list[ServerEvent]], ctx: InjectionContext, code: int, subcode: int) -> None:
    """Meta answers HTTP 400 with a Graph error to each request; nothing in it is received."""
    for group in groups:
        at = first_attempt_at(group)
        if at is None:
            continue
        attempt = Attempt(at, 400, code, subcode, new_fbtrace_id(ctx.rng), 0)
        for record in group:
            record.attempts = [attempt]
