"""Typed inputs and outputs of the checks.

Checks are pure functions ``check_x(inputs: AuditInputs) -> list[Finding]``. Everything they look at
is handed to them here, already aggregated per hour by the ledger (``tools.ledger``) or read from Meta
(``tools.meta``), so a check does no I/O and an audit's cost does not grow with the raw event count.

Hours are UTC hour starts (timezone-aware). "Ledger" counts are what capi-agent itself recorded;
"Meta" counts are what Meta reports through the Graph API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tools.checks.payload_quality import PayloadHour
    from tools.checks.relay_refusals import RelayRefusalCount
    from tools.senders.types import SenderChange

CheckName = Literal["parity", "emq", "latency", "volume", "hashing", "delivery", "duplicates", "relay",
                    "payload", "dedupe"]
Severity = Literal["info", "warning", "critical"]
Source = Literal["browser", "server"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# Upper edges (seconds, inclusive) of the lag histogram kept per hour; the last bucket is open.
LAG_BUCKET_EDGES: tuple[int, ...] = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 24 * 3600, 3 * 86400, 7 * 86400)
# Upper edges (seconds, inclusive) of the signed arrival offset received_at - event_time kept per
# received hour: negative is an event dated in the future. The last bucket is open.
OFFSET_EDGES: tuple[int, ...] = (-12 * 3600, -6 * 3600, -3 * 3600, -3600, -300, 300, 3600, 3 * 3600,
                                 6 * 3600, 12 * 3600, 24 * 3600)


@dataclass(frozen=True)
class EventHour:
    """Ledger aggregates for one event name in one hour of event_time (server side)."""

    hour: datetime
    event_name: str
    events: int
    with_event_id: int = 0
    # Match key -> events carrying it. Keys use Meta's user_data names: em, ph, fn, ln, ge, db, ct,
    # st, zp, country, external_id, client_ip_address, client_user_agent, fbc, fbp.
    key_counts: dict[str, int] = field(default_factory=dict)
    # Field -> values that arrived as raw PII (they were normalized and hashed at the door).
    raw_pii: dict[str, int] = field(default_factory=dict)
    # Field -> values that are the sha256 of a placeholder ("", "null", "undefined", test@test.com, ...).
    placeholder: dict[str, int] = field(default_factory=dict)
    # Field -> values sent as hex that is upper-case (Meta wants lower-case hex).
    uppercase_hex: dict[str, int] = field(default_factory=dict)
    # Field -> values that look hashed but are neither 64-hex sha256 nor raw (e.g. md5, truncated).
    not_sha256: dict[str, int] = field(default_factory=dict)
    # Field -> values of must-not-hash fields (client_ip_address, client_user_agent, fbc, fbp, ...)
    # that arrived hashed.
    must_not_hash: dict[str, int] = field(default_factory=dict)
    # Field (fbc, fbp) -> malformed values.
    malformed: dict[str, int] = field(default_factory=dict)
    # Field -> share (0..1) of the most frequent hashed value among events carrying the field.
    top_value_share: dict[str, float] = field(default_factory=dict)
    # Events whose event_id was already seen for this pixel and event name: the same event delivered
    # again (a sender's retries). Meta keeps one server event per event_id and name within 48 hours,
    # so these are wasted requests, not double counts (``duplicates.repeated_event_ids``).
    duplicate_event_ids: int = 0
    # Purchases that repeat an earlier Purchase of the pixel under another event_id (or none), so
    # Meta counts the order twice (``duplicates.double_counted``): the same custom_data.order_id ...
    double_order_ids: int = 0
    # ... or, when an order id does not tell them apart, the same hashed user, value and currency
    # within a minute.
    double_purchase_keys: int = 0
    # Lag histogram (seconds from event_time to delivery attempt), bucketed by LAG_BUCKET_EDGES
    # plus one open bucket; length len(LAG_BUCKET_EDGES) + 1. Only events with a delivery attempt.
    lag_buckets: tuple[int, ...] = ()
    # Events older than 7 days when first sent / received; events dated in the future (> 5 min).
    too_old: int = 0
    future_time: int = 0
    # Events never delivered: still pending, failed, or never sent.
    undelivered: int = 0


@dataclass(frozen=True)
class DeliveryHour:
    """Ledger aggregates of delivery attempts in one hour of attempt time."""

    hour: datetime
    attempts: int
    events_sent: int
    events_received: int
    failed_attempts: int
    retried_attempts: int = 0
    # "code/subcode" (subcode may be empty: "190/") -> failed attempts with that error.
    errors: dict[str, int] = field(default_factory=dict)
    # Transport failures (timeouts, connection errors, 5xx without a Graph error body).
    transport_errors: int = 0


@dataclass(frozen=True)
class ArrivalHour:
    """Server events by the hour they arrived, with the histogram of received_at - event_time
    (``OFFSET_EDGES``, plus one open bucket)."""

    hour: datetime
    events: int
    offsets: tuple[int, ...] = ()


@dataclass(frozen=True)
class OrderHour:
    """The shop's own orders in one hour of created_at, and how many the server side reported."""

    hour: datetime
    orders: int
    # Orders whose order_id matches a server Purchase (event_id or custom_data.order_id).
    matched: int
    value: float = 0.0


@dataclass(frozen=True)
class MetaHourlyCount:
    """One bucket of ``/{pixel}/stats?aggregation=event&event_source=WEB_ONLY|SERVER_ONLY``."""

    hour: datetime
    event_name: str
    source: Source
    count: int


@dataclass(frozen=True)
class DedupeKeyFeedback:
    dedupe_key: str  # event_id | external_id | fbp
    browser_pct: float | None
    server_pct: float | None
    overall_browser_coverage_pct: float | None


@dataclass(frozen=True)
class EventQuality:
    """One entry of the Dataset Quality API ``web`` list."""

    event_name: str
    composite_score: float | None  # EMQ 0..10
    # Identifier (email, phone, ip_address, user_agent, external_id, fbc, fbp, ...) -> coverage %.
    match_key_coverage: dict[str, float] = field(default_factory=dict)
    event_coverage_pct: float | None = None
    dedupe_key_feedback: tuple[DedupeKeyFeedback, ...] = ()
    upload_frequency: str | None = None  # real_time | hourly | daily | ...


@dataclass(frozen=True)
class QualitySnapshot:
    fetched_at: datetime
    events: tuple[EventQuality, ...]


@dataclass(frozen=True)
class CrawlerSurplus:
    """Server events of one name that no browser's visitor caused (``tools.checks.crawler``), taken
    out of the counts the checks see."""

    event_name: str
    start: datetime
    end: datetime  # the last hour of the surplus
    removed: int
    server_events: int  # server events of those hours, surplus included
    usual_cookie_share: float
    cookie_share: float
    evidence_llr: float


@dataclass(frozen=True)
class IncidentSpan:
    """An open incident as the checks see it: which series it touches and since when."""

    root_cause: str
    since: datetime
    # Empty: the whole pixel (token, missed batch, ...): every series keeps these hours out.
    event_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotJudged:
    """A series the audit could not judge this hour, and why (reported, never skipped silently)."""

    event_name: str | None
    source: Source
    reason: str


@dataclass(frozen=True)
class MetaReadError:
    """A failed read of Meta's side (stats or dataset quality) during this audit."""

    endpoint: Literal["stats", "dataset_quality"]
    kind: Literal["token_invalid", "permission", "rate_limited", "unreachable", "other"]
    message: str
    code: int | None = None
    subcode: int | None = None


class Thresholds(BaseModel):
    """Per-pixel knobs; defaults are meant to be quiet on normal traffic and loud on outages."""

    emq_floor: float = Field(7.0, description="EMQ below this is critical-ish (emq.below_floor)")
    emq_goal: float = Field(8.0, description="EMQ below this is a warning (emq.below_goal)")
    emq_drop: float = Field(1.0, description="Fall of the composite score against the previous week")
    key_coverage_drop_pct: float = Field(25.0, description="Points a match key's coverage may fall")
    parity_min_ratio: float = Field(0.6, description="server/browser below this ratio of its baseline")
    event_id_min_coverage: float = Field(0.9, description="Share of server events that must carry event_id")
    order_match_min: float = Field(0.8, description="Share of orders that must match a server Purchase")
    latency_p95_seconds: float = Field(3600.0, description="p95 of event_time -> delivery lag")
    volume_drop_ratio: float = Field(0.5, description="Observed below this fraction of the baseline")
    volume_spike_ratio: float = Field(3.0, description="Observed above this multiple of the baseline")
    volume_z: float = Field(4.0, description="Poisson-aware z-score an anomaly must also pass")
    min_baseline_events: float = Field(5.0, description="Below this hourly baseline, volume rules sleep")
    hash_bad_share: float = Field(0.02, description="Share of a field's values that may be bad")
    top_value_share: float = Field(0.3, description="One hash above this share of a field is suspect")
    delivery_error_share: float = Field(0.05, description="Failed share of attempts that raises a finding")
    baseline_weeks: int = Field(4, description="Weeks of history the baselines look at")


@dataclass(frozen=True)
class AuditInputs:
    """Everything a check may look at for one pixel and one audited hour.

    The ledger series cover [history_start, window_end); Meta series the same when Meta answered,
    otherwise ``meta_counts``/``quality`` are None and ``meta_read_errors`` says why.
    """

    pixel_id: str
    window_start: datetime
    window_end: datetime
    history_start: datetime
    event_hours: tuple[EventHour, ...]
    delivery_hours: tuple[DeliveryHour, ...]
    order_hours: tuple[OrderHour, ...] = ()
    meta_counts: tuple[MetaHourlyCount, ...] | None = None
    quality: QualitySnapshot | None = None
    # Earlier dataset-quality snapshots (oldest first), for drops against the past.
    quality_history: tuple[QualitySnapshot, ...] = ()
    meta_read_errors: tuple[MetaReadError, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    timezone: str = "UTC"
    has_orders: bool = False
    # When the audit ran (None: at window_end). Recent hours a batch sender has not flushed yet are
    # judged on the next audit instead of looking like a loss.
    audited_at: datetime | None = None
    # Incidents still open for this pixel: their hours are kept out of every reference, so a failure
    # that lasts never becomes the new "usual".
    incident_spans: tuple[IncidentSpan, ...] = ()
    # Server events by arrival hour (the window and the history before it).
    arrival_hours: tuple[ArrivalHour, ...] = ()
    # Requests the relay refused for this pixel (tools.checks.relay_refusals), by hour of arrival.
    relay_refusals: tuple[RelayRefusalCount, ...] = ()
    # Crawler surplus already taken out of ``event_hours`` and ``meta_counts`` (``tools.checks.crawler``).
    crawler_surplus: tuple[CrawlerSurplus, ...] = ()
    # Changes of the pixel's sender (tools.senders) over the last days, oldest first: the diagnosis
    # names those shortly before an incident's onset.
    sender_changes: tuple[SenderChange, ...] = ()
    # Payload quality of server events by hour of event_time (tools.checks.payload_quality).
    payload_hours: tuple[PayloadHour, ...] = ()


class Finding(BaseModel):
    """What a check saw. ``fingerprint`` is stable across hours for the same problem."""

    id: str
    pixel_id: str
    check: CheckName
    code: str
    event_name: str | None = None
    severity: Severity
    summary: str
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)
    window_start: datetime
    window_end: datetime
    fingerprint: str


def finding_fingerprint(pixel_id: str, check: str, code: str, event_name: str | None) -> str:
    raw = f"{pixel_id}|{check}|{code}|{event_name or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def make_finding(
    inputs: AuditInputs,
    *,
    check: CheckName,
    code: str,
    severity: Severity,
    summary: str,
    event_name: str | None = None,
    metrics: dict[str, float | int | str | None] | None = None,
    evidence: list[str] | None = None,
) -> Finding:
    """Build a finding with a deterministic id (same audit, same problem -> same id)."""
    fingerprint = finding_fingerprint(inputs.pixel_id, check, code, event_name)
    fid = "f_" + hashlib.sha256(f"{fingerprint}|{inputs.window_end.isoformat()}".encode()).hexdigest()[:16]
    return Finding(
        id=fid,
        pixel_id=inputs.pixel_id,
        check=check,
        code=code,
        event_name=event_name,
        severity=severity,
        summary=summary,
        metrics=metrics or {},
        evidence=evidence or [],
        window_start=inputs.window_start,
        window_end=inputs.window_end,
        fingerprint=fingerprint,
    )
