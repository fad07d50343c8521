"""LLM tokens per audit: the audit graph over the scenario library with a scripted fake LLM.

    python -m evals.perf.tokens_per_audit [--limit N] [--only ID[,ID...]] [--days D]

The fake OpenAI server is ``evals.fakes.openai_server`` (the tests use the same one). Each scenario is
generated, ingested into a fresh SQLite ledger and audited once at its ``audit_at`` through
``AgentServices.audit_pixel`` with the real openai client talking to a fake OpenAI-compatible server
on loopback. The fake answers every diagnosis like a diligent model: one tool call (the detail of
the first finding shown), then a valid JSON answer confirming the deterministic root cause and citing
the incident's findings. Its token counts follow the fake's rule of about four characters a token,
so the figures measure how big our prompts and tool answers are, not a real model's verbosity.

Prints one row per scenario (incidents, LLM calls, prompt / completion / total tokens) and the mean.
``--days`` cuts each scenario to its last D days (faster; baselines get shorter).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent.llm import LLMAdapter, LLMConfig
from agent.settings import load_settings
from agent.wiring import AgentWiring, open_agent
from evals.fakes import openai_server as fake
from evals.harness import scenario_world
from tools.synth.scenario import Scenario, load_scenarios

FAKE_KEY = "sk-perf-fake"
# Script items queued per audit: far more than an audit's incidents x (tool call + answer).
QUEUED_ITEMS = 200


@dataclass
class AuditTokens:
    scenario_id: str
    incidents: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    recorded_total: int = 0  # tokens_used as the audit stored it
    seconds: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _estimate(text: str) -> int:
    return max(1, len(text) // 4)  # the fake server's own rule


def _block(body: dict[str, Any], tag: str) -> Any:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    start = user.index(f"<{tag}>") + len(tag) + 2
    return json.loads(user[start:user.index(f"</{tag}>")])


class DiligentModel:
    """Answers diagnosis requests (tool call, then a confirmation) and counts the tokens it bills."""

    def __init__(self, fake: Any, tally: AuditTokens) -> None:
        self.fake = fake
        self.tally = tally

    def __call__(self, body: dict[str, Any]) -> Any:
        prompt = _estimate(json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", [])))
        self.tally.llm_calls += 1
        self.tally.prompt_tokens += prompt
        if body["messages"][-1]["role"] != "tool":
            findings = _block(body, "findings")
            calls = [("finding_detail", {"finding_id": findings[0]["id"]})]
            completion = _estimate(json.dumps([{"function": {"name": n, "arguments": json.dumps(a)}}
                                               for n, a in calls]))
            self.tally.completion_tokens += completion
            return self.fake.ToolCalls(calls, prompt_tokens=prompt, completion_tokens=completion)
        diagnosis = _block(body, "deterministic_diagnosis")
        content = json.dumps({
            "root_cause": diagnosis["root_cause"], "confidence": 0.8,
            "finding_ids": diagnosis["finding_ids"],
            "narrative": f"{diagnosis['summary']} The cited findings show it in the audited hour.",
            "fix_kinds": diagnosis["fix_kinds"]})
        completion = _estimate(content)
        self.tally.completion_tokens += completion
        return self.fake.Answer(content, prompt_tokens=prompt, completion_tokens=completion)


def shortened(scenario: Scenario, days: int | None) -> Scenario:
    if days is None or days >= scenario.days:
        return scenario
    start = scenario.audit_at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    data = scenario.model_dump()
    data.update(start=max(start, scenario.start), days=days)
    return Scenario.model_validate(data)


def audit_tokens(scenario: Scenario, fake: Any, server: Any, workdir: Path) -> AuditTokens:
    """One audit of ``scenario`` through the graph, with the fake LLM; its token bill."""
    tally = AuditTokens(scenario.id)
    model = DiligentModel(fake, tally)
    server.reset()
    server.script(*[model] * QUEUED_ITEMS)
    adapter = LLMAdapter.from_config(LLMConfig(model="fake-model", base_url=server.url,
                                               api_key=SecretStr(FAKE_KEY), max_retries=0))
    with scenario_world(scenario, workdir) as world:
        url = f"sqlite:///{workdir / 'ledger.db'}"
        wiring = AgentWiring(settings=load_settings(database_url=url), engine=world.engine)
        world.simulator.state.set_now(scenario.audit_at)
        with open_agent(wiring, adapter=adapter, clock=lambda: scenario.audit_at,
                        client_factory=lambda _pixel: world.client()) as services:
            started = time.perf_counter()
            state = services.audit_pixel(world.pixel, scenario.audit_at)
            tally.seconds = time.perf_counter() - started
    tally.incidents = len(state.get("incidents", []))
    tally.recorded_total = int(state.get("tokens_used", 0))
    server.reset()
    return tally


def print_table(rows: list[AuditTokens]) -> None:
    header = f"{'scenario':<38} {'incidents':>9} {'llm calls':>9} {'prompt':>8} {'completion':>10} {'total':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.scenario_id:<38} {row.incidents:>9} {row.llm_calls:>9} {row.prompt_tokens:>8} "
              f"{row.completion_tokens:>10} {row.total_tokens:>8}")
    if not rows:
        return
    print("-" * len(header))

    def mean(values: list[int]) -> str:
        return f"{statistics.fmean(values):.1f}"

    print(f"{'mean per audit':<38} {mean([r.incidents for r in rows]):>9} {mean([r.llm_calls for r in rows]):>9} "
          f"{mean([r.prompt_tokens for r in rows]):>8} {mean([r.completion_tokens for r in rows]):>10} "
          f"{mean([r.total_tokens for r in rows]):>8}")
    with_llm = [r for r in rows if r.llm_calls]
    if with_llm:
        print(f"{'mean per audit with incidents':<38} {mean([r.incidents for r in with_llm]):>9} "
              f"{mean([r.llm_calls for r in with_llm]):>9} {mean([r.prompt_tokens for r in with_llm]):>8} "
              f"{mean([r.completion_tokens for r in with_llm]):>10} {mean([r.total_tokens for r in with_llm]):>8}")
    mismatched = [r.scenario_id for r in rows if r.recorded_total != r.total_tokens]
    if mismatched:
        print(f"warning: tokens_used recorded by the audit differs from the bill for: {', '.join(mismatched)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N scenarios (by id)")
    parser.add_argument("--only", default="", help="Comma-separated scenario ids")
    parser.add_argument("--days", type=int, default=None, help="Cut each scenario to its last D days")
    args = parser.parse_args(argv)
    scenarios = load_scenarios()
    if args.only:
        wanted = {part.strip() for part in args.only.split(",") if part.strip()}
        scenarios = [s for s in scenarios if s.id in wanted]
    if args.limit is not None:
        scenarios = scenarios[:args.limit]
    rows: list[AuditTokens] = []
    started = time.perf_counter()
    with fake.FakeOpenAIServer(api_key=FAKE_KEY) as server:
        for scenario in scenarios:
            with tempfile.TemporaryDirectory(prefix="tokens-") as tmp:
                rows.append(audit_tokens(shortened(scenario, args.days), fake, server, Path(tmp)))
            print(f"  {scenario.id}: {rows[-1].total_tokens} tokens", file=sys.stderr, flush=True)
    print_table(rows)
    print(f"\n{len(rows)} scenario(s) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
