"""Hashing check: are user_data fields hashed, normalized and formatted as Meta expects?

Works from the per-field counters the ledger keeps per event and hour (the values themselves are
never looked at here). One finding per code and event; ``metrics.field`` names the worst field and
``metrics.fields`` all fields above the allowed share.
"""

from __future__ import annotations

from tools.checks.series import span_label, sum_counter, window_hours
from tools.checks.types import AuditInputs, EventHour, Finding, Severity, make_finding

# counter attribute on EventHour -> (finding code, severity, what went wrong, in words)
COUNTERS: tuple[tuple[str, str, Severity, str], ...] = (
    ("raw_pii", "hashing.raw_pii", "critical", "arrived as raw, unhashed personal data"),
    ("placeholder", "hashing.placeholder", "warning", "hash a placeholder ('', 'null', test address)"),
    ("uppercase_hex", "hashing.uppercase_hex", "warning", "are upper-case hex (Meta needs lower-case)"),
    ("not_sha256", "hashing.not_sha256", "warning", "look hashed but are not SHA-256"),
    ("must_not_hash", "hashing.must_not_hash", "warning", "were hashed although Meta needs them in clear"),
)
FORMAT_FIELDS = ("fbc", "fbp")
# The dominant-value test needs this many values of a field before one value can "dominate".
MIN_VALUES_FOR_DOMINANCE = 20


def _carrying(rows: list[EventHour], field: str) -> int:
    """Events that carry ``field`` (falls back to all events when the key count is unknown)."""
    carried = sum(r.key_counts.get(field, 0) for r in rows)
    return carried or sum(r.events for r in rows)


def _field_finding(
    inputs: AuditInputs, rows: list[EventHour], name: str, code: str, severity: Severity, what: str,
    bad: dict[str, int],
) -> Finding | None:
    t = inputs.thresholds
    shares = {
        field: (count, _carrying(rows, field)) for field, count in bad.items() if count > 0
    }
    over = {f: (c, n) for f, (c, n) in shares.items() if n and c / n > t.hash_bad_share}
    if not over:
        return None
    worst = max(over, key=lambda f: over[f][0] / over[f][1])
    count, carrying = over[worst]
    label = span_label_for(inputs)
    return make_finding(
        inputs, check="hashing", code=code, event_name=name, severity=severity,
        summary=f"{count / carrying:.0%} of '{worst}' values on {name} {what}.",
        metrics={"field": worst, "fields": ",".join(sorted(over)), "observed": round(count / carrying, 3),
                 "baseline": 0.0, "threshold": t.hash_bad_share, "bad_values": count, "events": carrying},
        evidence=[f"{label}: {c} of {n} '{f}' values on {name}" for f, (c, n) in sorted(over.items())],
    )


def span_label_for(inputs: AuditInputs) -> str:
    return span_label(window_hours(inputs))


def check_hashing(inputs: AuditInputs) -> list[Finding]:
    """hashing.* findings per event over the audited window."""
    hours = set(window_hours(inputs))
    by_event: dict[str, list[EventHour]] = {}
    for row in inputs.event_hours:
        if row.hour in hours:
            by_event.setdefault(row.event_name, []).append(row)
    out: list[Finding] = []
    for name, rows in sorted(by_event.items()):
        for attr, code, severity, what in COUNTERS:
            finding = _field_finding(inputs, rows, name, code, severity, what, sum_counter(rows, attr))
            if finding:
                out.append(finding)
        malformed = sum_counter(rows, "malformed")
        for field in FORMAT_FIELDS:
            finding = _field_finding(
                inputs, rows, name, f"hashing.{field}_malformed", "warning",
                "are malformed (expected fb.<n>.<ms>.<id>)", {field: malformed.get(field, 0)},
            )
            if finding:
                out.append(finding)
        out.extend(_dominant(inputs, rows, name))
    return out


def _dominant(inputs: AuditInputs, rows: list[EventHour], name: str) -> list[Finding]:
    """hashing.dominant_value: one hashed value is shared by too many events (a constant sent)."""
    t = inputs.thresholds
    shares: dict[str, tuple[float, int]] = {}
    for field in sorted({f for r in rows for f in r.top_value_share}):
        weighted = [(r.top_value_share[field], r.key_counts.get(field, r.events)) for r in rows
                    if field in r.top_value_share]
        carrying = sum(n for _, n in weighted)
        if carrying >= MIN_VALUES_FOR_DOMINANCE:
            shares[field] = (sum(s * n for s, n in weighted) / carrying, carrying)
    over = {f: v for f, v in shares.items() if v[0] > t.top_value_share}
    if not over:
        return []
    worst = max(over, key=lambda f: over[f][0])
    share, carrying = over[worst]
    return [make_finding(
        inputs, check="hashing", code="hashing.dominant_value", event_name=name, severity="warning",
        summary=f"One '{worst}' hash is on {share:.0%} of {name} events: a constant or default is sent.",
        metrics={"field": worst, "fields": ",".join(sorted(over)), "observed": round(share, 3),
                 "baseline": None, "threshold": t.top_value_share, "events": carrying},
        evidence=[f"{span_label_for(inputs)}: the commonest '{f}' value is on {s:.0%} of {n} {name} events"
                  for f, (s, n) in sorted(over.items())],
    )]
