"""``python -m tools.synth ... --at``: a scenario dated so that its audit falls in the hour of ``--at``
(default: now), so that what the README does with it (audit, replay) stays inside Meta's 7 days."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tools.synth.__main__ as synth_cli
from tools.synth.scenario import find_scenario, redate
from tools.timeutil import from_unix, parse_iso

META_WINDOW = timedelta(days=7)  # Meta refuses events whose event_time is older


def short_scenario_file(tmp_path: Path, scenario_id: str = "missed_batch.v1", days: int = 2) -> Path:
    """A library scenario cut to its last ``days`` days (same failure, faster to generate)."""
    scenario = find_scenario(scenario_id)
    first_day = scenario.audit_at.replace(hour=0, minute=0, second=0, microsecond=0)
    short = scenario.model_copy(update={"start": first_day - timedelta(days=days - 1), "days": days})
    path = tmp_path / "short.json"
    path.write_text(short.model_dump_json(), encoding="utf-8")
    return path


def read_env(folder: Path) -> dict[str, str]:
    lines = (folder / "scenario.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_redate_moves_every_date_by_the_same_whole_hours() -> None:
    scenario = find_scenario("missed_batch.v1")  # audit 2026-11-12T19:05Z, batch skipped 18:00-19:00
    moved = redate(scenario, parse_iso("2026-12-01T10:41:17Z"))
    shift = moved.start - scenario.start
    assert shift == parse_iso("2026-12-01T10:00:00Z") - parse_iso("2026-11-12T19:00:00Z")
    assert moved.audit_at == parse_iso("2026-12-01T10:05:00Z")  # the hour of --at, the scenario's minutes
    assert [(i.onset, i.end) for i in moved.injections] == [
        (parse_iso("2026-12-01T09:00:00Z"), parse_iso("2026-12-01T10:00:00Z"))]
    assert (moved.id, moved.seed, moved.days, moved.expect) == (scenario.id, scenario.seed, scenario.days,
                                                                scenario.expect)


def test_redate_moves_sales_and_demand_events_in_the_shop_block() -> None:
    scenario = find_scenario("missed_batch.v1")
    spike = {"start": "2026-11-10T08:00:00Z", "end": "2026-11-10T12:00:00Z", "multiplier": 2.0}
    demand = {"kind": "storm", "start": "2026-11-11T00:00:00Z", "end": "2026-11-11T06:00:00Z", "multiplier": 0.5}
    with_events = scenario.model_copy(update={"shop": {**scenario.shop, "sales_spikes": [spike],
                                                       "demand_events": [demand]}})
    moved = redate(with_events, scenario.audit_at + timedelta(days=2))
    config = moved.shop_config()
    assert config.sales_spikes[0].start == parse_iso("2026-11-12T08:00:00Z")
    assert config.demand_events[0].end == parse_iso("2026-11-13T06:00:00Z")


def test_redate_in_the_scenarios_own_hour_changes_nothing() -> None:
    scenario = find_scenario("missed_batch.v1")
    assert redate(scenario, parse_iso("2026-11-12T19:59:00Z")) == scenario


def test_default_at_is_now_and_every_unsent_event_is_young_enough_to_replay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime(2026, 12, 1, 10, 24, 31, tzinfo=UTC)
    monkeypatch.setattr(synth_cli, "utcnow", lambda: now)
    out = tmp_path / "shop"
    assert synth_cli.main([str(short_scenario_file(tmp_path)), "--out", str(out)]) == 0
    env = read_env(out)
    assert env == {"SCENARIO_ID": "missed_batch.v1", "PIXEL_ID": "1100000005", "AUDIT_AT": "2026-12-01T10:05:00Z",
                   "SINCE": "2026-12-01T09:00:00Z", "UNTIL": "2026-12-01T10:00:00Z"}
    printed = capsys.readouterr().out
    assert "AUDIT_AT=2026-12-01T10:05:00Z" in printed and "at 2026-12-01T10:05Z" in printed
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    unsent = [from_unix(line["event"]["event_time"]) for line in lines if "delivery" not in line]
    assert unsent, "the skipped batch left events never sent"
    assert all(parse_iso(env["SINCE"]) <= when < parse_iso(env["UNTIL"]) for when in unsent)
    assert min(unsent) > now - META_WINDOW  # a replay now is accepted by Meta
    newest = max(from_unix(line["event"]["event_time"]) for line in lines)
    assert newest <= parse_iso(env["AUDIT_AT"])
    assert json.loads((out / "meta_state.json").read_text(encoding="utf-8"))["now"] == env["AUDIT_AT"]


def test_an_explicit_at_dates_the_scenario_there(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    assert synth_cli.main([str(short_scenario_file(tmp_path)), "--out", str(out),
                           "--at", "2027-03-04T22:00:00Z"]) == 0
    assert read_env(out)["AUDIT_AT"] == "2027-03-04T22:05:00Z"


def test_a_bad_at_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        synth_cli.main(["missed_batch.v1", "--out", str(tmp_path), "--at", "yesterday"])
    assert exit_.value.code == 2
    assert "not an ISO-8601 time: 'yesterday'" in capsys.readouterr().err
    assert not (tmp_path / "events.jsonl").exists()
