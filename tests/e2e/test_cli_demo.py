"""The README's main command, ``capi-agent demo``: the whole loop on a fresh work folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agent.cli import build_app


def test_demo_audits_proposes_replays_after_approval_and_verifies(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["demo", "--yes", "--workdir", str(tmp_path)],
                                env={"OPENAI_API_KEY": "", "CAPI_LLM_MODEL": ""})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Root cause: missed_batch" in out
    assert "Proposed fix" in out and "(needs approval)" in out
    assert "Fix outcome: executed" in out
    assert "0 after: resolved" in out
    assert (tmp_path / "demo.db").exists()  # its own ledger, never CAPI_DATABASE_URL


def test_demo_does_nothing_when_the_person_says_no(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_app(), ["demo", "--workdir", str(tmp_path)], input="n\n",
                                env={"OPENAI_API_KEY": "", "CAPI_LLM_MODEL": ""})
    assert result.exit_code == 0, result.output
    assert "Approve this fix?" in result.output
    assert "Fix outcome: rejected" in result.output and "sent " not in result.output.split("Fix outcome")[1]
