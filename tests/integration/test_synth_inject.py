"""Every root cause leaves its raw signal in both the ledger file and Meta's state.

These tests read the generated files only (the checks that turn the signals into findings belong to
another module). ``assert_raw_signal`` is shared with the scenario tests.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tools.synth.generator import GeneratedFiles, generate
from tools.synth.inject import INJECTABLE_CAUSES, INJECTORS, Injection
from tools.synth.people import sha256_hex
from tools.synth.shop import ShopConfig
from tools.timeutil import HOUR, floor_hour, parse_iso, to_unix

START = datetime(2026, 11, 10, tzinfo=UTC)
ONSET = datetime(2026, 11, 11, 14, tzinfo=UTC)
NOW = datetime(2026, 11, 11, 20, tzinfo=UTC)
CONFIG = ShopConfig(pixel_id="555000111", timezone="Europe/Paris")
SEED = 11


@dataclass
class Output:
    """The three files of one run, parsed."""

    lines: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    state: dict[str, Any]
    pixel_id: str

    @property
    def now(self) -> datetime:
        return parse_iso(self.state["now"])

    def meta(self, side: str, start: datetime, end: datetime, names: list[str] | None = None) -> list[dict]:
        rows = self.state["pixels"][self.pixel_id][f"{side}_hours"]
        return [
            row
            for row in rows
            if start <= parse_iso(row["hour"]) < end and (names is None or row["event_name"] in names)
        ]

    def meta_count(self, side: str, start: datetime, end: datetime, names: list[str] | None = None) -> int:
        return sum(row["count"] for row in self.meta(side, start, end, names))

    def ledger(
        self, start: datetime, end: datetime, names: list[str] | None = None, by: str = "event_time"
    ) -> list[dict]:
        """Lines whose event_time (or received_at) falls in [start, end)."""

        def when(line: dict) -> float:
            return (
                line["event"]["event_time"]
                if by == "event_time"
                else parse_iso(line["received_at"]).timestamp()
            )

        low, high = to_unix(start), to_unix(end)
        return [
            line
            for line in self.lines
            if low <= when(line) < high and (names is None or line["event"]["event_name"] in names)
        ]


def read_output(files: GeneratedFiles) -> Output:
    def jsonl(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    return Output(
        jsonl(files.events_path),
        jsonl(files.orders_path),
        json.loads(files.meta_state_path.read_text()),
        files.pixel_id,
    )


def audit_window(at: datetime) -> tuple[datetime, datetime]:
    end = floor_hour(at)
    return end - HOUR, end


def assert_raw_signal(inj: Injection, out: Output) -> None:
    """The cause's raw signal in the audit window (the last full hour before "now") on both sides."""
    start, end = audit_window(out.now)
    ref_start, ref_end = start - timedelta(days=1), end - timedelta(days=1)
    names = inj.events
    cause = inj.cause
    window = out.ledger(start, end, names)
    if cause == "browser_pixel_down":
        assert out.meta_count("browser", ref_start, ref_end, names) > 0
        assert out.meta_count("browser", start, end, names) == 0
        assert out.meta_count("server", start, end, names) > 0
    elif cause == "server_events_down":
        assert window == [] and out.meta_count("server", start, end, names) == 0
        assert out.meta_count("browser", start, end, names) > 0
        assert (
            out.ledger(ref_start, ref_end, names) and out.meta_count("server", ref_start, ref_end, names) > 0
        )
    elif cause == "access_token_invalid":
        sent = [line for line in window if "delivery" in line and line["delivery"].get("attempts")]
        assert sent and all(
            (d := line["delivery"])["status"] == "failed"
            and d["http_status"] == 400
            and (d["error_code"], d["error_subcode"], d["events_received"]) == (190, 463, 0)
            for line in sent
        )
        assert out.meta_count("server", start, end) == 0
        assert out.meta_count("browser", start, end) > 0
        assert "shop-token" in out.state["tokens"]["expired"]
    elif cause == "missed_batch":
        assert window and all("delivery" not in line for line in window)
        assert out.meta_count("server", start, end) == 0 and out.meta_count("browser", start, end) > 0
        before = out.ledger(start - HOUR, start)
        assert before and all(line["delivery"]["status"] == "delivered" for line in before)
    elif cause == "late_delivery":
        delivered = [line for line in out.ledger(inj.onset, end) if line["delivery"]["status"] == "delivered"]
        lags = sorted(
            parse_iso(line["delivery"]["attempted_at"]).timestamp() - line["event"]["event_time"]
            for line in delivered
        )
        assert lags and lags[int(0.95 * (len(lags) - 1))] > 2 * 3600
        assert window and all(
            line["delivery"]["status"] == "pending"
            and line["delivery"]["attempted_at"] is None
            and "attempts" not in line["delivery"]
            for line in window
        )
        late_hours = out.meta("server", inj.onset, end)
        assert late_hours and all(row["lag_seconds_p50"] > 3600 for row in late_hours)
        assert all(row["lag_seconds_p50"] < 120 for row in out.meta("server", ref_start, ref_end))
    elif cause == "dedup_broken":
        assert window and all("event_id" not in line["event"] for line in window)
        rows = out.meta("server", start, end)
        assert rows and all(row["with_event_id"] == 0 < row["count"] for row in rows)
        assert all(row["with_event_id"] == row["count"] for row in out.meta("browser", start, end))
    elif cause == "hashing_error":
        mode = inj.params.get("mode", "raw")
        ems = [v for line in window for v in line["event"]["user_data"].get("em", [])]
        assert ems
        if mode == "raw":
            assert all(v.strip().lower().endswith("@example.com") for v in ems)
            phones = [v for line in window for v in line["event"]["user_data"].get("ph", [])]
            assert phones and all("555-01" in v for v in phones)
            before = [
                v for line in out.ledger(ref_start, ref_end) for v in line["event"]["user_data"].get("em", [])
            ]
            assert before and not any("@" in v for v in before)
        else:
            assert Counter(ems)[sha256_hex("")] / len(ems) > 0.2
        assert out.meta_count("server", start, end, names) > 0  # Meta took them: nothing fails loudly
    elif cause == "match_keys_lost":
        key = inj.params.get("key", "fbc")
        assert window and not any(key in line["event"]["user_data"] for line in window)
        rows, ref_rows = out.meta("server", start, end, names), out.meta("server", ref_start, ref_end, names)
        assert sum(r["count"] for r in rows) > 0 and sum(r["match_keys"][key] for r in rows) == 0
        assert sum(r["match_keys"][key] for r in ref_rows) > 0
    elif cause == "malformed_parameter":
        with_fbc = [line for line in window if "fbc" in line["event"]["user_data"]]
        assert with_fbc
        for line in with_fbc:
            assert len(line["event"]["user_data"]["fbc"].split(".")[2]) == 10  # seconds, not ms
            delivery = line["delivery"]
            assert (
                delivery["status"],
                delivery["http_status"],
                delivery["error_code"],
                delivery["error_subcode"],
            ) == ("failed", 400, 100, 2804001)
        ok = [line for line in window if line["delivery"]["status"] == "delivered"]
        assert out.meta_count("server", start, end) == len(ok) < len(window)
    elif cause == "duplicate_events":
        # Copies of the window's last minutes may still be on their way at "now".
        ids = Counter(line["event"]["event_id"] for line in out.ledger(start, end - timedelta(minutes=5)))
        assert ids and min(ids.values()) >= 2
        assert out.meta_count("server", start, end) >= 2 * out.meta_count("server", ref_start, ref_end) > 0
    elif cause == "event_renamed":
        old, new = inj.params.get("from", "AddToCart"), inj.params.get("to", "add_to_cart")
        for side in ("server", "browser"):
            assert out.meta_count(side, start, end, [old]) == 0 < out.meta_count(side, start, end, [new])
            assert out.meta_count(side, ref_start, ref_end, [old]) > 0
        assert not out.ledger(start, end, [old]) and out.ledger(start, end, [new])
    elif cause == "clock_skew":
        received = out.ledger(start, end, by="received_at")
        assert received and all(
            line["event"]["event_time"] - parse_iso(line["received_at"]).timestamp() > 3600
            for line in received
        )
        assert (
            out.meta_count("server", floor_hour(out.now), floor_hour(out.now) + 3 * HOUR) > 0
        )  # future hours
    elif cause == "rate_limited":
        code = int(inj.params.get("code", 17))
        retried = [line for line in out.ledger(inj.onset, end) if line["delivery"].get("attempts", 0) > 1]
        assert retried and all(
            r["error_code"] == code for line in retried for r in line["delivery"]["retries"]
        )
        delivered_late = [line for line in retried if line["delivery"]["status"] == "delivered"]
        lags = sorted(
            parse_iso(line["delivery"]["attempted_at"]).timestamp() - line["event"]["event_time"]
            for line in delivered_late
        )
        assert lags and lags[len(lags) // 2] > 300  # retries with backoff: minutes, not seconds
        assert (
            any(
                line["delivery"]["status"] == "pending" and line["delivery"]["error_code"] == code
                for line in window
            )
            or inj.end is not None
        )
    else:  # pragma: no cover - a new cause must get its assertion
        raise AssertionError(f"no raw-signal assertion for {cause}")


def run(tmp_path: Path, injections: list[Injection], config: ShopConfig = CONFIG) -> Output:
    files = generate(config, start=START, end=NOW, seed=SEED, injections=injections, out_dir=tmp_path)
    return read_output(files)


CASES: dict[str, Injection] = {
    "browser_pixel_down": Injection(cause="browser_pixel_down", onset=ONSET),
    "server_events_down": Injection(
        cause="server_events_down", onset=ONSET, events=["AddToCart", "Purchase"]
    ),
    "access_token_invalid": Injection(cause="access_token_invalid", onset=ONSET),
    "missed_batch": Injection(cause="missed_batch", onset=NOW - HOUR),
    "late_delivery": Injection(cause="late_delivery", onset=ONSET),
    "dedup_broken": Injection(cause="dedup_broken", onset=ONSET),
    "hashing_error": Injection(cause="hashing_error", onset=ONSET, params={"mode": "raw"}),
    "match_keys_lost": Injection(cause="match_keys_lost", onset=ONSET, params={"key": "fbc"}),
    "malformed_parameter": Injection(cause="malformed_parameter", onset=ONSET),
    "duplicate_events": Injection(cause="duplicate_events", onset=ONSET),
    "event_renamed": Injection(
        cause="event_renamed", onset=ONSET, params={"from": "AddToCart", "to": "add_to_cart"}
    ),
    "clock_skew": Injection(cause="clock_skew", onset=ONSET),
    "rate_limited": Injection(cause="rate_limited", onset=ONSET),
}


def test_every_catalogue_cause_has_an_injector_and_a_case() -> None:
    assert set(INJECTORS) == set(INJECTABLE_CAUSES) == set(CASES)
    assert "none" not in INJECTABLE_CAUSES and len(INJECTABLE_CAUSES) == 13


@pytest.mark.parametrize("cause", sorted(CASES))
def test_injection_produces_its_raw_signal(cause: str, tmp_path: Path) -> None:
    assert_raw_signal(CASES[cause], run(tmp_path, [CASES[cause]]))


@pytest.mark.parametrize("cause", ["browser_pixel_down", "access_token_invalid", "duplicate_events"])
def test_traffic_before_onset_is_untouched(cause: str, tmp_path: Path) -> None:
    healthy = run(tmp_path / "healthy", [])
    injected = run(tmp_path / "injected", [CASES[cause]])
    cutoff = to_unix(ONSET) - 120  # deliveries of the last minutes may straddle the onset
    assert [line for line in healthy.lines if line["event"]["event_time"] < cutoff] == [
        line for line in injected.lines if line["event"]["event_time"] < cutoff
    ]
    assert healthy.meta("browser", START, ONSET) == injected.meta("browser", START, ONSET)
    assert healthy.orders == injected.orders  # the shop took the same orders either way


def test_hashing_placeholder_and_injection_end(tmp_path: Path) -> None:
    placeholder = Injection(cause="hashing_error", onset=ONSET, params={"mode": "placeholder"})
    assert_raw_signal(placeholder, run(tmp_path / "p", [placeholder]))
    ended = Injection(cause="browser_pixel_down", onset=ONSET, end=NOW - 2 * HOUR)
    out = run(tmp_path / "e", [ended])
    assert out.meta_count("browser", ONSET, NOW - 2 * HOUR) == 0 < out.meta_count("browser", NOW - HOUR, NOW)


def test_rate_limit_codes_and_recovery(tmp_path: Path) -> None:
    limited = Injection(cause="rate_limited", onset=ONSET, end=NOW - 3 * HOUR, params={"code": 80004})
    out = run(tmp_path, [limited])
    assert_raw_signal(limited, out)
    retried = [line for line in out.lines if line["delivery"].get("attempts", 0) > 1]
    assert {r["error_subcode"] for line in retried for r in line["delivery"]["retries"]} == {2446079}
    # Once the limit clears, everything throttled gets through.
    assert all(line["delivery"]["status"] == "delivered" for line in out.ledger(ONSET, NOW - 2 * HOUR))
    with pytest.raises(ValueError):
        run(tmp_path / "bad", [Injection(cause="rate_limited", onset=ONSET, params={"code": 190})])


def test_unknown_cause_is_rejected() -> None:
    with pytest.raises(ValueError):
        Injection(cause="none", onset=ONSET)
    with pytest.raises(ValueError):
        Injection(cause="pixel_on_fire", onset=ONSET)
