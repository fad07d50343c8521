"""From findings to incidents: each group of a pixel's findings gets exactly one root cause.

Rules run in a fixed order and each claims the findings it explains, so that the cause that
explains the most goes first: an invalid token explains the server drop it causes; a batch that
was never sent explains Meta's server zero; a rename explains the zero of the old name; duplicated
server events explain the browser looking low. What no rule claims falls back to the best-matching
cause by finding code (with a lower confidence), except info findings, which never make an incident
on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from tools.checks.types import SEVERITY_RANK, AuditInputs, Finding
from tools.diagnosis.catalogue import cause_info
from tools.diagnosis.changes import attach_changes
from tools.diagnosis.fixes import suggest_fixes, undelivered_by_event
from tools.diagnosis.types import Incident, incident_fingerprint
from tools.timeutil import hours_between, parse_iso

SERVER_DROPS = ("parity.server_below_browser", "volume.zero", "volume.drop", "parity.orders_unmatched")
# Causes that hit every event of the pixel at once: their fingerprint leaves out the event names,
# which shift hour to hour with volume, so the incident is recognised as the same one.
PIXEL_WIDE = frozenset({"access_token_invalid", "missed_batch", "undetermined", "rate_limited", "malformed_parameter",
                        "late_delivery", "clock_skew", "hashing_error"})
TOO_OLD_SUBCODE = 2804003
# Hours of a sender's silence (nothing sent since its first unsent hour) that may still be a backlog.
UNDETERMINED_MAX_HOURS = 12
DELIVERY_FAILURES = frozenset({"access_token_invalid", "missed_batch", "rate_limited", "malformed_parameter"})


@dataclass
class Draft:
    cause: str
    findings: list[Finding] = field(default_factory=list)
    fallback: bool = False
    extra_events: list[str] = field(default_factory=list)


class Pool:
    """The findings still unexplained, with helpers for rules to claim them."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.left = list(findings)

    def take(self, match: Callable[[Finding], bool]) -> list[Finding]:
        taken = [f for f in self.left if match(f)]
        self.left = [f for f in self.left if not match(f)]
        return taken


def _source(f: Finding) -> str:
    return str(f.metrics.get("source", ""))


def _server_side(f: Finding) -> bool:
    if f.code.startswith("volume."):
        return _source(f) in ("server", "both") and f.code in ("volume.zero", "volume.drop")
    return f.code in SERVER_DROPS


def _is_too_old_rejection(f: Finding) -> bool:
    return f.code == "delivery.rejected" and f.metrics.get("subcode") == TOO_OLD_SUBCODE


def _rule(pool: Pool, cause: str, tell: Callable[[Finding], bool],
          support: Callable[[Finding], bool]) -> list[Draft]:
    tells = pool.take(tell)
    if not tells:
        return []
    return [Draft(cause, tells + pool.take(support))]


RENAME_DROPS = ("volume.zero", "volume.drop", "parity.server_below_browser", "parity.browser_below_server",
                "parity.orders_unmatched")
# A new name and a vanished one are the same events renamed when their rates agree within this factor
# (or their names are the same once case and punctuation are ignored) and they changed within this
# many hours of each other.
RENAME_RATE_FACTOR = 3.0
RENAME_ONSET_HOURS = 6


def _plain(name: str | None) -> str:
    return "".join(ch for ch in (name or "").lower() if ch.isalnum())


def _rate(f: Finding, key: str) -> float:
    value = f.metrics.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _of_events(names: Collection[str | None], test: Callable[[Finding], bool]) -> Callable[[Finding], bool]:
    """``test``, for findings of the events ``names`` only (bound now: the rules call it inside their loops)."""
    return lambda f: f.event_name in names and test(f)


def _renamed_pair(new: Finding, old: Finding) -> bool:
    """Is ``old`` (a name that fell silent) the same events as ``new`` (a name that appeared)?"""
    if old.code not in RENAME_DROPS or old.event_name in (None, new.event_name):
        return False
    same_word = _plain(new.event_name) == _plain(old.event_name)
    lost = _rate(old, "expected_per_hour") - _rate(old, "observed_per_hour")
    if lost <= 0:  # a finding from the hour-of-week rule: its window baseline is per hour
        lost = _rate(old, "baseline") / max(1.0, _rate(old, "hours")) - _rate(old, "observed") / max(
            1.0, _rate(old, "hours"))
    gained = _rate(new, "observed_per_hour")
    similar = lost > 0 and gained > 0 and 1 / RENAME_RATE_FACTOR <= gained / lost <= RENAME_RATE_FACTOR
    first_seen, onset = new.metrics.get("first_seen"), old.metrics.get("onset")
    close = True
    if isinstance(first_seen, str) and isinstance(onset, str):
        close = abs((parse_iso(first_seen) - parse_iso(onset)).total_seconds()) <= RENAME_ONSET_HOURS * 3600
    return close and (same_word or similar)


def _renames(pool: Pool) -> list[Draft]:
    """A new name paired with a vanished name (one incident per pair): Purchase -> purchase,
    Purchase -> checkout_complete at a similar rate, on one channel or both, at any volume."""
    drafts: list[Draft] = []
    for new in pool.take(lambda f: f.code == "volume.new_event"):
        old = pool.take(partial(_renamed_pair, new))
        if not old:
            pool.left.append(new)  # a genuinely new event: info, left to the fallback
            continue
        old_names = {f.event_name for f in old}
        # Match quality of a name that fell silent moves with it: part of the same incident.
        # So does the pairing of its browser and server copies (dedupe.reasons: the names differ).
        parity = pool.take(_of_events(old_names,
                                      lambda f: f.code.startswith(("parity.", "volume.", "emq.", "dedupe."))))
        drafts.append(Draft("event_renamed", [new, *old, *parity]))
    return drafts


def _events(fs: Sequence[Finding]) -> set[str | None]:
    return {f.event_name for f in fs}


def claim_by_rules(pool: Pool) -> list[Draft]:
    """Apply the ordered rules; what they leave stays in ``pool``."""
    drafts: list[Draft] = []
    drafts += _rule(pool, "access_token_invalid", lambda f: f.code == "delivery.token_invalid", _server_side)
    # A malformed fbc/fbp no longer counts as that match key, so its coverage "drop" is the same fault.
    malformed_keys = {f.code.removeprefix("hashing.").removesuffix("_malformed") for f in pool.left
                      if f.code in ("hashing.fbc_malformed", "hashing.fbp_malformed")}
    drafts += _rule(pool, "malformed_parameter",
                    lambda f: (f.code == "delivery.rejected" and not _is_too_old_rejection(f))
                    or f.code in ("hashing.fbc_malformed", "hashing.fbp_malformed"),
                    lambda f: _server_side(f) or f.code == "delivery.partial_receipt" or (
                        f.code == "emq.key_coverage_drop" and f.metrics.get("key") in malformed_keys))
    # A sender running hours late also leaves the window unsent: that is late_delivery, below.
    late = any(f.code in ("latency.p95_high", "latency.backlog_arrivals", "latency.clock_offset")
               or (f.code == "delivery.not_sent" and f.metrics.get("draining") == 1) for f in pool.left)
    # Nothing after the first unsent hour went out and nothing at all reached Meta this hour (what did
    # go out was not hours late): a stopped batch and a backed-up queue look the same until the sender
    # delivers again. Say so and propose nothing; after half a day of silence a queue that drains
    # nothing is a sender that stopped. A sender that delivered on time this hour and skipped the
    # rest, or moved on past unsent hours, skipped a batch.
    drafts += _rule(pool, "undetermined",
                    lambda f: f.code == "delivery.not_sent" and not late and f.metrics.get("pattern") == "suffix"
                    and f.metrics.get("window_received") == 0
                    and int(f.metrics.get("silent_hours") or 0) < UNDETERMINED_MAX_HOURS, _server_side)
    drafts += _rule(pool, "missed_batch", lambda f: f.code == "delivery.not_sent" and not late, _server_side)
    drafts += _rule(pool, "rate_limited", lambda f: f.code == "delivery.rate_limited",
                    lambda f: f.code in ("latency.p95_high", "latency.freshness_degraded",
                                         "delivery.transport_errors") or _server_side(f))
    drafts += _renames(pool)
    # Server copies Meta counted: the same order under another event_id (duplicates.double_counted),
    # or repeated event_ids that Meta's server count shows it kept (metrics.meta_counted) or of events
    # whose server count at Meta rose with them. Alone, repeated event_ids are retries Meta drops: no
    # incident (fallback_cause).
    browser_down = {f.event_name for f in pool.left
                    if f.code in ("volume.zero", "volume.drop") and _source(f) in ("browser", "both")}
    inflated = {f.event_name for f in pool.left if f.event_name not in browser_down and (
        f.code == "parity.browser_below_server" or (
            f.code == "volume.spike" and _source(f) in ("server", "both") and f.metrics.get("origin") != "ledger"))}
    dups = pool.take(lambda f: f.severity != "info" and (f.code == "duplicates.double_counted" or (
        f.code == "duplicates.repeated_event_ids"
        and (f.event_name in inflated or f.metrics.get("meta_counted") == 1))))
    if dups:
        # A sender doubling Purchases doubles its other events too (no order id tells them apart):
        # an event whose server side rose at Meta (and whose browser side did not fall) is part of it.
        names = _events(dups) | inflated
        drafts.append(Draft("duplicate_events", dups + pool.take(
            lambda f: f.event_name in names and (
                (f.code == "volume.spike" and _source(f) in ("server", "both"))
                or f.code in ("parity.browser_below_server", "duplicates.repeated_event_ids")))))
    # A wrong clock moves every event by the same amount: the lag, the "missing" hour at Meta and the
    # crowded hours next to it are all its doing. Judged before late delivery, which a clock behind
    # also looks like by lag alone.
    if any(f.code in ("latency.clock_offset", "latency.future_time") for f in pool.left):
        drafts += _rule(pool, "clock_skew", lambda f: f.code in ("latency.clock_offset", "latency.future_time"),
                        lambda f: f.code in ("latency.p95_high", "latency.freshness_degraded")
                        or (f.code.startswith("parity.") and "_below_" in f.code)
                        or f.code in ("volume.zero", "volume.drop", "volume.spike"))
    drafts += _rule(pool, "late_delivery",
                    lambda f: f.code in ("latency.p95_high", "latency.too_old", "latency.backlog_arrivals")
                    or _is_too_old_rejection(f) or (f.code == "delivery.not_sent" and f.metrics.get("draining") == 1),
                    # Events still queued are missing from Meta's server counts of the window.
                    lambda f: f.code in ("latency.freshness_degraded", "delivery.transport_errors",
                                         "delivery.not_sent") or _server_side(f))
    # Server copies that reach us days after their browser copies leave their orders unmatched until
    # they arrive: that orders gap is the lateness, not a lost pipeline, and a backfill from orders
    # would count those Purchases twice once they land.
    late_copies = pool.take(lambda f: f.code == "dedupe.reasons" and bool(f.metrics.get("share_server_late")))
    if late_copies:
        names = _events(late_copies)
        drafts.append(Draft("dedup_broken", late_copies + pool.take(
            lambda f: f.code == "parity.orders_unmatched" and f.event_name in names)))
    drafts += _rule(pool, "dedup_broken",
                    lambda f: f.code == "parity.dedup_key_missing" and f.severity != "info",
                    lambda f: f.code == "dedupe.reasons")
    keys = pool.take(lambda f: f.code == "emq.key_coverage_drop")
    if keys:
        names = _events(keys)
        drafts.append(Draft("match_keys_lost", keys + pool.take(
            lambda f: f.code.startswith("emq.") and f.event_name in names)))
    hashing = pool.take(lambda f: f.code.startswith("hashing.") and f.severity != "info")
    if hashing:
        names = _events(hashing)
        drafts.append(Draft("hashing_error", hashing + pool.take(
            lambda f: f.code in ("emq.drop", "emq.below_floor") and f.event_name in names)))
    down = _rule(pool, "server_events_down", lambda f: f.code == "parity.server_below_browser", _server_side)
    for draft in down:
        # The server side carries the match keys: its loss moves the event's match quality too.
        names = _events(draft.findings)
        draft.findings += pool.take(_of_events(names, lambda f: f.code in ("emq.drop", "emq.below_floor",
                                                                           "emq.below_goal")))
    drafts += down
    drafts += _rule(pool, "browser_pixel_down", lambda f: f.code == "parity.browser_below_server",
                    lambda f: f.code in ("volume.zero", "volume.drop") and _source(f) == "browser")
    return drafts


def fallback_cause(f: Finding) -> str | None:
    """Best-matching cause for a warning/critical finding no rule claimed (None: no incident)."""
    if f.code == "duplicates.repeated_event_ids":
        # A sender re-delivering event_ids Meta already has: Meta keeps one copy per event_id, so
        # nothing is over-counted and no fix of ours applies. It stays a warning in the audit.
        return None
    if f.code == "latency.freshness_degraded":
        # Meta's label alone, with nothing late in the ledger: supporting evidence only.
        return None
    if f.code in ("emq.drop", "emq.below_floor", "emq.below_goal"):
        # Meta's score fell but the ledger's own key coverage did not (that would be
        # emq.key_coverage_drop, claimed above): the score moves with the mix of channels too (server
        # events lost leave only the Pixel's thinner keys). A warning, and an incident once a
        # channel's share or a key's coverage says which.
        return None
    if f.code == "delivery.meta_unreachable":
        # Our own reads of Meta failed: not a fault of the integration unless Meta says why.
        kind = f.metrics.get("kind")
        return {"rate_limited": "rate_limited", "permission": "access_token_invalid"}.get(str(kind))
    by_code = {
        "volume.spike": "duplicate_events",
        "parity.orders_unmatched": "server_events_down",
        "delivery.transport_errors": "late_delivery",
        "delivery.partial_receipt": "server_events_down",
        "parity.dedup_key_missing": "dedup_broken",
        # Why the pairs do not merge; of the payload checks only spoiled match keys have a cause
        # (the other payload.* findings are standalone warnings for the sender's owner).
        "dedupe.reasons": "dedup_broken",
        "payload.constant_ip": "match_keys_lost",
        "payload.website_no_user_agent": "match_keys_lost",
    }
    if f.code in by_code:
        return by_code[f.code]
    if f.code in ("volume.zero", "volume.drop"):
        return "browser_pixel_down" if _source(f) == "browser" else "server_events_down"
    by_check = {"parity": "server_events_down", "volume": "server_events_down", "latency": "late_delivery",
                "hashing": "hashing_error", "emq": "match_keys_lost", "delivery": "server_events_down"}
    return by_check.get(f.check)


def confidence(draft: Draft) -> float:
    """Higher when the tell-tale findings and their corroboration agree."""
    info = cause_info(draft.cause)
    codes = {f.code for f in draft.findings}
    tells = codes & set(info.tell_tales)
    corroborating = codes - set(info.tell_tales)
    critical = any(f.severity == "critical" for f in draft.findings)
    if draft.fallback or not tells:
        return round(min(0.5, 0.3 + 0.05 * len(codes) + (0.05 if critical else 0.0)), 2)
    score = 0.6 + 0.1 * min(3, len(corroborating)) + 0.05 * (len(tells) > 1) + 0.05 * critical
    return round(min(0.95, score), 2)


def _incident(draft: Draft, inputs: AuditInputs) -> Incident:
    info = cause_info(draft.cause)
    findings = sorted(draft.findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.code, f.event_name or ""))
    extra = set(draft.extra_events)
    if draft.cause in DELIVERY_FAILURES:
        # Delivery findings are pixel-wide; the ledger says which events are stuck.
        extra |= set(undelivered_by_event(
            inputs, hours_between(_gap_since(findings) or inputs.window_start, inputs.window_end)))
    names = sorted({f.event_name for f in findings if f.event_name} | extra)
    severity = max((f.severity for f in findings), key=lambda s: SEVERITY_RANK[s])
    fingerprint = incident_fingerprint(inputs.pixel_id, draft.cause,
                                       [] if draft.cause in PIXEL_WIDE else names)
    lead = next((f for f in findings if f.code in info.tell_tales), findings[0])
    parameter = "fbp" if any(f.code == "hashing.fbp_malformed" for f in findings) and not any(
        f.code == "hashing.fbc_malformed" or f.metrics.get("subcode") == 2804001 for f in findings) else "fbc"
    fields = sorted({str(x) for f in findings if f.check == "hashing"
                     for x in str(f.metrics.get("fields") or f.metrics.get("field") or "").split(",") if x})
    events_text = f" ({', '.join(names)})" if names else ""
    undetermined = draft.cause == "undetermined"
    return Incident(
        id="i_" + hashlib.sha256(f"{fingerprint}|{inputs.window_end.isoformat()}".encode()).hexdigest()[:16],
        pixel_id=inputs.pixel_id,
        root_cause=draft.cause,  # type: ignore[arg-type]
        confidence=confidence(draft),
        severity=severity,
        event_names=names,
        finding_ids=[f.id for f in findings],
        summary=f"{info.title}{events_text}: {lead.summary}",
        fixes=suggest_fixes(draft.cause, inputs, names, parameter=parameter, fields=fields,
                            since=_gap_since(findings)),
        fingerprint=fingerprint,
        started_at=_started_at(findings, inputs),
        candidates=["missed_batch", "late_delivery"] if undetermined else [],
        next_hour=("If events reach Meta again next hour while these stay unsent, a batch was skipped and a "
                   "replay will be proposed; if these arrive late, it is a backlog draining and nothing "
                   "needs replaying.") if undetermined else None,
    )


def _gap_since(findings: Sequence[Finding]) -> datetime | None:
    """Start of the oldest past gap of unsent events the findings report (None: the window only)."""
    starts = [parse_iso(str(f.metrics["since"])) for f in findings
              if f.code == "delivery.not_sent" and isinstance(f.metrics.get("since"), str)]
    return min(starts) if starts else None


def _started_at(findings: Sequence[Finding], inputs: AuditInputs) -> datetime:
    """The earliest onset the findings date (change points, past gaps), else the audited window."""
    onsets = [parse_iso(str(f.metrics[key])) for f in findings for key in ("onset", "since")
              if isinstance(f.metrics.get(key), str)]
    return min([*onsets, inputs.window_start])


def diagnose(findings: Sequence[Finding], inputs: AuditInputs) -> list[Incident]:
    """Group the pixel's findings into incidents, each with one root cause from the catalogue.

    Healthy input (only info findings) yields no incident. Incidents come most severe first, then
    most confident.
    """
    mine = [f for f in findings if f.pixel_id == inputs.pixel_id]
    pool = Pool(mine)
    drafts = claim_by_rules(pool)
    by_cause = {d.cause: d for d in drafts if d.cause != "event_renamed"}
    for f in pool.left:
        if f.severity == "info":
            continue
        cause = fallback_cause(f)
        if cause is None:
            continue
        if cause in by_cause:
            by_cause[cause].findings.append(f)
        else:
            draft = Draft(cause, [f], fallback=True)
            by_cause[cause] = draft
            drafts.append(draft)
    merged: dict[str, Draft] = {}
    singles: list[Draft] = []
    for draft in drafts:
        if draft.cause == "event_renamed":
            singles.append(draft)
        elif draft.cause in merged:
            merged[draft.cause].findings += draft.findings
        else:
            merged[draft.cause] = draft
    incidents = [_incident(d, inputs) for d in [*merged.values(), *singles]]
    incidents = attach_changes(incidents, inputs.sender_changes)
    return sorted(incidents, key=lambda i: (-SEVERITY_RANK[i.severity], -i.confidence, i.root_cause))
