"""The grown scenario library: generated records are on disk exactly as the generator writes them,
cover every root cause with several variants, and bring the healthy scenarios to 20 or more."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from evals.evaluate.library import build_library, file_name, render, write_library
from tools.synth.scenario import default_scenario_dir, load_scenarios


def test_generated_records_match_the_files_in_the_library() -> None:
    folder = default_scenario_dir()
    for scenario in build_library():
        assert (folder / file_name(scenario)).read_text(encoding="utf-8") == render(scenario), scenario.id


def test_generation_is_reproducible(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_library(tmp_path / "a")]
    second = [p.read_bytes() for p in write_library(tmp_path / "b")]
    assert first == second and len(first) == len(build_library())


def test_library_has_variants_of_every_cause_two_cause_cases_and_twenty_healthy() -> None:
    scenarios = load_scenarios()
    per_cause = Counter(cause for s in scenarios for cause in s.expect.root_causes if cause != "none")
    assert min(per_cause.values()) >= 2, per_cause
    assert any(len(s.expect.root_causes) >= 2 for s in scenarios)
    assert sum(s.expect.healthy for s in scenarios) >= 20
    assert len({s.pixel_id for s in scenarios}) == len(scenarios)  # one pixel per scenario
