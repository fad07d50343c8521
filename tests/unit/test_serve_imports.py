"""``capi-agent serve`` does not load what only some set-ups use: the openai package (only with an LLM
configured) and matplotlib (only when an incident's chart is drawn). Together they are some 40 MB of
the server's resident memory (``evals/perf/bench_serve_memory.py``). Checked on the import graph of a
fresh interpreter that imports what ``serve`` imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import agent.commands.serve, agent.server, agent.wiring, agent.agent_services, agent.email.smtp, agent.memory
import agent.graphs.audit, agent.graphs.fix, agent.graphs.chat, agent.slack.app, agent.checkpoint
print(json.dumps(sorted(sys.modules)))
"""


def test_serve_imports_neither_openai_nor_matplotlib() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "agent.server" in modules and "langgraph" in modules
    assert sorted(m for m in modules if m.split(".")[0] in ("openai", "matplotlib")) == []
