"""The root-cause catalogue: what each cause means, how it shows in findings, and what fixes it.

``tell_tales`` are the finding codes that reveal the cause on their own; ``supporting`` codes add
confidence (and are absorbed into the incident) but do not establish it alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.diagnosis.types import FixKind, RootCause


@dataclass(frozen=True)
class RootCauseInfo:
    code: RootCause
    title: str
    description: str
    typical_evidence: tuple[str, ...]
    fix_kinds: tuple[FixKind, ...]
    manual_remedy: str
    tell_tales: tuple[str, ...] = ()
    supporting: tuple[str, ...] = ()


CATALOGUE: dict[str, RootCauseInfo] = {
    info.code: info
    for info in (
        RootCauseInfo(
            "browser_pixel_down", "Browser pixel stopped firing",
            "The Meta pixel on the site stopped sending some or all events (theme change, consent "
            "banner, tag manager edit) while the server side carries on.",
            ("browser counts fall to ~0", "server counts steady"), ("manual",),
            "Check that the pixel base code and event tags are on the site and fire (Meta Pixel Helper).",
            ("parity.browser_below_server",), ("volume.zero", "volume.drop"),
        ),
        RootCauseInfo(
            "server_events_down", "Server events stopped",
            "The shop's backend stopped producing server events for some events; no delivery errors.",
            ("server counts fall (ledger and Meta)", "browser steady", "orders without a server Purchase"),
            ("replay", "backfill_from_orders", "manual"),
            "Check the server-side integration (webhook, plugin, deploy) that creates these events.",
            ("parity.server_below_browser",), ("volume.zero", "volume.drop", "parity.orders_unmatched"),
        ),
        RootCauseInfo(
            "access_token_invalid", "Access token invalid or expired",
            "Meta answers code 190 to our sends (and reads): the access token expired or was revoked.",
            ("delivery errors 190 (subcode 463 expired, 460 password changed)", "Meta server counts fall"),
            ("manual", "replay"),
            "Create a new system-user access token in Events Manager, set META_ACCESS_TOKEN, then replay.",
            ("delivery.token_invalid",),
            ("parity.server_below_browser", "volume.zero", "volume.drop", "parity.orders_unmatched"),
        ),
        RootCauseInfo(
            "missed_batch", "Events recorded but never sent",
            "The ledger holds the hour's server events but no send was attempted (a batch job or "
            "worker did not run) while browser and orders show normal activity.",
            ("undelivered events in the ledger", "no delivery attempts in the window", "Meta server zero"),
            ("replay",),
            "Restart the sending job/worker; then replay the unsent events.",
            ("delivery.not_sent",),
            ("volume.zero", "volume.drop", "parity.server_below_browser", "parity.orders_unmatched"),
        ),
        RootCauseInfo(
            "late_delivery", "Events reach Meta late",
            "Events are sent hours after they happened (queue backlog, batch schedule); Meta's data "
            "freshness is no longer real time and events near 7 days old are rejected.",
            ("lag p95 beyond threshold", "data freshness not real time", "events older than 7 days"),
            ("manual", "replay"),
            "Send events as they happen (or every few minutes); drain the queue, then replay pending.",
            ("latency.p95_high", "latency.too_old", "latency.backlog_arrivals"),
            ("latency.freshness_degraded", "delivery.transport_errors", "volume.drop", "volume.zero",
             "parity.server_below_browser"),
        ),
        RootCauseInfo(
            "dedup_broken", "Deduplication broken",
            "Server events lost their event_id, so Meta cannot match them with browser events and "
            "counts conversions twice.",
            ("event_id coverage falls", "Meta dedupe-key feedback falls", "Meta counts near browser+server"),
            ("manual",),
            "Send the same event_id from the pixel (eventID) and the server (event_id) for each event.",
            ("parity.dedup_key_missing",), (),
        ),
        RootCauseInfo(
            "hashing_error", "Customer data hashed wrongly",
            "user_data arrives raw, hashed from placeholders, upper-case hex, not SHA-256, or fields "
            "that must stay clear are hashed: matches fail and raw PII may leak.",
            ("raw PII", "placeholder hashes", "bad normalization", "must-not-hash fields hashed"),
            ("rehash",),
            "Normalize then SHA-256 (lower-case hex) em, ph, fn, ln...; never hash ip, user agent, fbc, fbp.",
            ("hashing.raw_pii", "hashing.placeholder", "hashing.uppercase_hex", "hashing.not_sha256",
             "hashing.must_not_hash", "hashing.dominant_value"),
            ("emq.drop", "emq.below_floor", "emq.below_goal"),
        ),
        RootCauseInfo(
            "match_keys_lost", "A match key is no longer sent",
            "One customer-information key (fbc, fbp, em, ph, ip, user agent, external_id) disappeared "
            "from server events, so Meta matches fewer events to people.",
            ("one key's coverage falls", "EMQ falls"), ("manual",),
            "Restore capture of the missing key (keep the _fbc cookie / fbclid, pass email at checkout).",
            ("emq.key_coverage_drop",), ("emq.drop", "emq.below_floor", "emq.below_goal"),
        ),
        RootCauseInfo(
            "malformed_parameter", "Batches rejected for a malformed parameter",
            "Meta rejects whole batches with code 100 and a 2804xxx subcode (e.g. 2804001: fbc "
            "incorrectly formatted); every event in them is lost.",
            ("code 100 / subcode 2804001", "malformed fbc/fbp values"), ("repair_and_replay",),
            "Send fbc exactly as fb.1.<ms>.<fbclid> (never modify the fbclid) or drop it; then replay.",
            ("delivery.rejected", "hashing.fbc_malformed", "hashing.fbp_malformed"),
            ("parity.server_below_browser", "volume.zero", "volume.drop", "delivery.partial_receipt",
             "parity.orders_unmatched"),
        ),
        RootCauseInfo(
            "duplicate_events", "Orders counted more than once",
            "The same orders reach Meta as several server Purchases under different event_ids (a "
            "webhook registered twice, a second integration sending them too): Meta deduplicates only "
            "by event_id, so conversions are over-counted.",
            ("Purchases repeating an order under another event_id", "more Purchases than orders"),
            ("manual",),
            "Find the second sender (webhook registered twice, plugin plus custom code) and stop it, or "
            "give every copy of an order the same event_id.",
            # Repeated event_ids are claimed only when Meta's server count rose with them (rules.py).
            ("duplicates.double_counted", "duplicates.repeated_event_ids"),
            ("volume.spike", "parity.browser_below_server"),
        ),
        RootCauseInfo(
            "event_renamed", "An event was renamed",
            "One event name fell to zero while a new name appeared at a similar volume: campaigns "
            "optimising for the old name lose their signal.",
            ("old name to zero", "new name at similar volume"), ("manual",),
            "Restore the standard event name (or move campaigns and custom conversions to the new one).",
            ("volume.new_event",), ("volume.zero", "volume.drop"),
        ),
        RootCauseInfo(
            "clock_skew", "Event times are wrong",
            "event_time is in the future or shifted by a constant (server clock or time-zone bug).",
            ("future event_time", "constant shift"), ("manual",),
            "Send event_time as a UTC unix timestamp in seconds taken when the event happened.",
            ("latency.future_time", "latency.clock_offset"),
            ("latency.p95_high", "parity.server_below_browser", "parity.browser_below_server"),
        ),
        RootCauseInfo(
            "undetermined", "Cause not determined yet",
            "The evidence of this hour fits more than one cause (events recorded but not sent: a skipped "
            "batch, or a backlog that will deliver them late); the next hour tells them apart.",
            ("events recorded, none sent this hour",), ("manual",),
            "Check that the sending job or queue worker is running; nothing is replayed until it is clear "
            "whether the events are lost or only late.",
            (), (),
        ),
        RootCauseInfo(
            "rate_limited", "Meta is rate-limiting our sends",
            "Sends fail with codes 4, 17, 613 or 80004 and are retried; lag rises.",
            ("codes 4/17/613/80004", "retries", "rising lag"), ("replay",),
            "Send fewer, larger requests (up to 1000 events) and back off; replay failed events after.",
            ("delivery.rate_limited",),
            ("latency.p95_high", "latency.freshness_degraded", "delivery.transport_errors",
             "parity.server_below_browser", "volume.drop", "volume.zero"),
        ),
        RootCauseInfo(
            "none", "No problem", "Nothing beyond normal variation.", (), (), "Nothing to do.",
        ),
    )
}

def cause_info(code: str) -> RootCauseInfo:
    """The catalogue entry of a root cause (KeyError for a code outside the catalogue)."""
    return CATALOGUE[code]
