"""Seeded synthetic shop traffic, root-cause injection and the scenario library.

Entry points: ``generator.generate`` (a shop's three files), ``inject.Injection`` (one root cause),
``scenario.load_scenarios`` / ``scenario.materialize`` / ``scenario.redate`` (the library, ``data/scenarios``),
``ledger.load_scenario_ledger`` (a scenario's files in a fresh ledger), ``python -m tools.synth [--at]``,
``timeline.build_timeline`` (a period generated once, seen as it was at any hour: the eval's no-leak
replay) and ``realdemand`` (real demand series, NAB, MIT: ``data/real_traffic``).
"""
