"""The scenario library: eval cases as records with stable, versioned ids (``tools/synth/data/scenarios/*.json``),
and how one becomes the three files an audit runs on."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from tools.diagnosis.types import ROOT_CAUSES
from tools.synth.generator import GeneratedFiles, generate
from tools.synth.inject import Injection
from tools.synth.shop import ShopConfig
from tools.timeutil import as_utc, floor_hour, parse_iso

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


class Expectation(BaseModel):
    """What a correct audit at ``audit_at`` concludes."""

    root_causes: list[str]
    findings_any: list[str] = Field(default_factory=list, description="At least one of these codes")
    healthy: bool

    @field_validator("root_causes")
    @classmethod
    def _known_causes(cls, value: list[str]) -> list[str]:
        unknown = [cause for cause in value if cause not in ROOT_CAUSES]
        if unknown or not value:
            raise ValueError(f"root causes must be from the catalogue, got {value}")
        return value

    @model_validator(mode="after")
    def _healthy_means_none(self) -> Expectation:
        if self.healthy != (self.root_causes == ["none"]):
            raise ValueError("healthy scenarios expect exactly ['none'] and vice versa")
        return self


class Scenario(BaseModel):
    """One eval case: a seeded shop, the root causes injected into it, and the expected verdict."""

    id: str = Field(pattern=r"^[a-z0-9_]+\.v[0-9]+$")
    description: str
    seed: int
    pixel_id: str = Field(pattern=r"^[0-9]+$")
    timezone: str = "UTC"
    start: datetime
    days: int = Field(ge=1, le=60)
    shop: dict[str, Any] = Field(
        default_factory=dict, description="ShopConfig fields (scale, sales_spikes...)"
    )
    injections: list[Injection] = Field(default_factory=list)
    audit_at: datetime
    expect: Expectation
    family: str | None = Field(None, description="The failure (or healthy) family a generated variant belongs to")
    first_audit_at: datetime | None = Field(
        None, description="First hourly audit (default: the hour after the earliest onset; healthy: set by the eval)")
    detect_within_hours: float | None = Field(
        None, gt=0, description="Target: warned within this many hours of the onset (or of the first audit)")

    @field_validator("start", "audit_at", "first_audit_at", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.start < self.audit_at <= self.end:
            raise ValueError("audit_at must fall inside the generated period")
        for injection in self.injections:
            if not self.start <= injection.onset < self.audit_at:
                raise ValueError(f"{injection.cause}: onset must be after start and before audit_at")
        if self.first_audit_at is not None and not self.start < self.first_audit_at <= self.audit_at:
            raise ValueError("first_audit_at must fall between start and audit_at")
        injected = {injection.cause for injection in self.injections}
        if not self.expect.healthy and not set(self.expect.root_causes) <= injected:
            raise ValueError("every expected root cause must be injected")
        self.shop_config()  # fail at load time on a bad shop block
        return self

    @property
    def family_name(self) -> str:
        """The family (as set; else ``classic_<first expected cause>`` or ``healthy_classic``)."""
        if self.family:
            return self.family
        return "healthy_classic" if self.expect.healthy else f"classic_{self.expect.root_causes[0]}"

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def shop_config(self) -> ShopConfig:
        return ShopConfig(**{**self.shop, "pixel_id": self.pixel_id, "timezone": self.timezone})


def default_scenario_dir() -> Path:
    """The packaged library, ``tools/synth/data/scenarios`` (the synthesizer owns its data: ``tools``
    never reads the ``evals`` package)."""
    return Path(str(files("tools.synth").joinpath("data", "scenarios")))


def load_scenario_file(path: Path) -> Scenario:
    return Scenario.model_validate(json.loads(path.read_text(encoding="utf-8")))


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    """Every ``*.json`` scenario in a folder (default: the packaged library), sorted by id.

    Raises ValueError when two files share an id.
    """
    folder = path or default_scenario_dir()
    scenarios = [load_scenario_file(file) for file in sorted(folder.glob("*.json"))]
    seen: set[str] = set()
    for scenario in scenarios:
        if scenario.id in seen:
            raise ValueError(f"duplicate scenario id {scenario.id}")
        seen.add(scenario.id)
    return sorted(scenarios, key=lambda scenario: scenario.id)


def find_scenario(id_or_file: str, folder: Path | None = None) -> Scenario:
    """A scenario by id (``browser_pixel_down.v1``) from the library, or from a JSON file path."""
    candidate = Path(id_or_file)
    if candidate.suffix == ".json" and candidate.is_file():
        return load_scenario_file(candidate)
    for scenario in load_scenarios(folder):
        if scenario.id == id_or_file:
            return scenario
    raise KeyError(f"no scenario {id_or_file!r}")


WEEK = timedelta(days=7)


def redate(scenario: Scenario, at: datetime) -> Scenario:
    """The scenario moved by whole hours so that its audit falls in the clock hour of ``at`` (19:05
    in the library, at 10:xx: 10:05).

    Every date moves together (start, audit, onsets and ends, sales and demand events), so the
    scenario keeps its length and the timing of its failures relative to the audit; it is generated
    afresh at its new dates, so its time of day and weekday, and with them its volumes, follow the
    new dates. Meta takes events up to 7 days old: a scenario dated near now can be replayed, one on
    the library's fixed dates soon cannot.
    """
    shift = floor_hour(at) - floor_hour(scenario.audit_at)
    if not shift:
        return scenario
    record = _moved(scenario.model_dump(mode="python"), shift)
    shop = record["shop"]
    if shop.get("demand_series") is not None:  # keep the demand series' weeks where they were
        shop["demand_shift_weeks"] = shop.get("demand_shift_weeks", 0) + round(shift / WEEK)
    return Scenario.model_validate(record)


def _moved(value: Any, shift: timedelta) -> Any:
    """``value`` with every datetime in it (and every ISO date-time string, as the raw ``shop`` block
    holds them) moved by ``shift``."""
    if isinstance(value, datetime):
        return as_utc(value) + shift
    if isinstance(value, str) and _ISO_DATETIME.match(value):
        return parse_iso(value) + shift
    if isinstance(value, dict):
        return {key: _moved(item, shift) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, shift) for item in value]
    return value


def materialize(scenario: Scenario, out_dir: Path) -> GeneratedFiles:
    """Write the scenario's events.jsonl, orders.jsonl and meta_state.json as seen at audit_at."""
    return generate(
        scenario.shop_config(),
        start=scenario.start,
        end=min(scenario.end, scenario.audit_at),
        now=scenario.audit_at,
        seed=scenario.seed,
        injections=scenario.injections,
        out_dir=out_dir,
    )
