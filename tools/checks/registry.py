"""The deterministic checks, by name, and one call that runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeGuard

from tools.checks.crawler import check_crawler
from tools.checks.dedupe_reasons import check_dedupe_reasons
from tools.checks.delivery import check_delivery
from tools.checks.duplicates import check_duplicates
from tools.checks.emq import check_emq
from tools.checks.hashing import check_hashing
from tools.checks.latency import check_latency
from tools.checks.parity import check_parity
from tools.checks.payload_quality import check_payload
from tools.checks.relay_refusals import check_relay_refusals
from tools.checks.types import SEVERITY_RANK, AuditInputs, CheckName, Finding
from tools.checks.volume import check_volume

CheckFn = Callable[[AuditInputs], list[Finding]]

def check_volume_and_crawler(inputs: AuditInputs) -> list[Finding]:
    """Volume, and what a crawler added to it (set apart before every check: ``tools.checks.crawler``)."""
    return [*check_volume(inputs), *check_crawler(inputs)]


CHECKS: dict[CheckName, CheckFn] = {
    "parity": check_parity,
    "emq": check_emq,
    "latency": check_latency,
    "volume": check_volume_and_crawler,
    "hashing": check_hashing,
    "delivery": check_delivery,
    "duplicates": check_duplicates,
    "relay": check_relay_refusals,
    "payload": check_payload,
    "dedupe": check_dedupe_reasons,
}


def _known(name: str) -> TypeGuard[CheckName]:
    return name in CHECKS


def run_checks(inputs: AuditInputs, only: Iterable[str] | None = None) -> list[Finding]:
    """Run the named checks (all by default) and return their findings, most severe first, then by
    code and event name. Unknown names raise ValueError rather than silently checking nothing."""
    names = list(CHECKS) if only is None else list(only)
    unknown = [name for name in names if not _known(name)]
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    findings = [finding for name in names if _known(name) for finding in CHECKS[name](inputs)]
    return sorted(findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.code, f.event_name or ""))
