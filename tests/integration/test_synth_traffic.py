"""The healthy traffic model: reproducible, shaped like a real shop, consistent across the three files."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tools.synth.generator import GeneratedFiles, generate
from tools.synth.people import normalized_email, normalized_phone, raw_email, raw_phone
from tools.synth.shop import SalesSpike, ShopConfig
from tools.timeutil import parse_iso

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
PARIS = ZoneInfo("Europe/Paris")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
COOKIE = re.compile(r"^fb\.1\.\d{13}\.[A-Za-z0-9_=-]+$")


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedFiles, float]:
    out = tmp_path_factory.mktemp("two_weeks")
    started = time.process_time()
    files = generate(
        ShopConfig(timezone="Europe/Paris"), start=START, end=START + timedelta(days=14), seed=7, out_dir=out
    )
    return files, time.process_time() - started


@pytest.fixture(scope="module")
def lines(two_weeks: tuple[GeneratedFiles, float]) -> list[dict]:
    return read_lines(two_weeks[0].events_path)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    config = ShopConfig(pixel_id="42", timezone="America/New_York")
    end = START + timedelta(days=2)
    runs = [
        generate(config, start=START, end=end, seed=seed, out_dir=tmp_path / name)
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    for attr in ("events_path", "orders_path", "meta_state_path"):
        first, again, other = (getattr(run, attr).read_bytes() for run in runs)
        assert first == again
        assert first != other


def test_fourteen_days_is_modest_and_fast(two_weeks: tuple[GeneratedFiles, float], lines: list[dict]) -> None:
    files, cpu_seconds = two_weeks
    assert 25_000 <= files.server_events <= 45_000
    assert files.server_events == len(lines)
    # The brief asks < 3 s; leave head-room for a loaded CI machine.
    assert cpu_seconds < 6.0
    per_hour = Counter(line["received_at"][:13] for line in lines)
    busiest = sorted(per_hour.values())
    assert busiest[int(0.99 * len(busiest))] < 300 and busiest[-1] < 400


def test_nights_are_quiet_and_evenings_peak(lines: list[dict]) -> None:
    by_local_hour: Counter[int] = Counter()
    for line in lines:
        by_local_hour[datetime.fromtimestamp(line["event"]["event_time"], PARIS).hour] += 1
    night = sum(by_local_hour[h] for h in (2, 3, 4, 5)) / 4
    evening = sum(by_local_hour[h] for h in (19, 20, 21)) / 3
    assert night < 0.2 * evening


def test_weekend_differs_from_weekdays(lines: list[dict]) -> None:
    per_day: Counter[str] = Counter()
    weekend_days: set[str] = set()
    for line in lines:
        local = datetime.fromtimestamp(line["event"]["event_time"], PARIS)
        per_day[local.date().isoformat()] += 1
        if local.weekday() >= 5:
            weekend_days.add(local.date().isoformat())
    full_days = [day for day in per_day if "2026-11-03" <= day <= "2026-11-14"]  # skip partial edges
    weekend = [per_day[d] for d in full_days if d in weekend_days]
    weekday = [per_day[d] for d in full_days if d not in weekend_days]
    ratio = (sum(weekend) / len(weekend)) / (sum(weekday) / len(weekday))
    assert 0.65 <= ratio <= 0.92  # default weekend_factor 0.8


def test_browser_and_server_overlap_in_realistic_range(two_weeks: tuple[GeneratedFiles, float]) -> None:
    state = json.loads(two_weeks[0].meta_state_path.read_text())
    pixel = state["pixels"][two_weeks[0].pixel_id]
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"browser": 0, "server": 0})
    for side in ("browser", "server"):
        for row in pixel[f"{side}_hours"]:
            totals[row["event_name"]][side] += row["count"]
    assert set(totals) == {"PageView", "ViewContent", "AddToCart", "InitiateCheckout", "Purchase", "Lead"}
    for name, sides in totals.items():
        if name == "Lead":
            continue
        assert 0.85 <= sides["server"] / sides["browser"] <= 1.25, name
    assert totals["Purchase"]["server"] >= totals["Purchase"]["browser"]  # ad blockers hide browser purchases


def test_purchase_match_key_coverage(lines: list[dict]) -> None:
    purchases = [line["event"]["user_data"] for line in lines if line["event"]["event_name"] == "Purchase"]
    share = {
        key: sum(1 for user in purchases if key in user) / len(purchases)
        for key in ("em", "ph", "fbc", "fbp", "client_ip_address", "client_user_agent", "external_id")
    }
    assert 0.6 <= share["em"] <= 0.8
    assert 0.25 <= share["ph"] <= 0.45
    assert 0.2 <= share["fbc"] <= 0.4
    assert 0.85 <= share["fbp"] <= 0.95
    assert share["client_ip_address"] == share["client_user_agent"] == 1.0
    assert 0.3 <= share["external_id"] <= 0.6


def test_values_are_hashed_and_cookies_well_formed(lines: list[dict]) -> None:
    for line in lines[:5000]:
        user = line["event"]["user_data"]
        for key in ("em", "ph", "external_id"):
            for value in user.get(key, []):
                assert HEX64.match(value), (key, value)
        for key in ("fbc", "fbp"):
            if key in user:
                assert COOKIE.match(user[key]), user[key]
    raw = "".join(json.dumps(line) for line in lines[:5000])
    assert "@" not in raw and "555-01" not in raw  # no raw email or phone slipped through


def test_hashes_follow_meta_normalization() -> None:
    assert normalized_email(12) == "customer.12@example.com"
    assert normalized_phone(0) == "12015550100"
    normalize = pytest.importorskip("tools.meta.normalize")
    assert normalize.normalize_field("em", raw_email(12)) == normalized_email(12)
    assert normalize.normalize_field("ph", raw_phone(0)) == normalized_phone(0)
    assert hashlib.sha256(normalized_email(12).encode()).hexdigest() == normalize.sha256_hex(
        normalized_email(12)
    )


def test_lead_is_low_volume_with_many_empty_hours(two_weeks: tuple[GeneratedFiles, float]) -> None:
    state = json.loads(two_weeks[0].meta_state_path.read_text())
    lead_hours = [
        row for row in state["pixels"][two_weeks[0].pixel_id]["browser_hours"] if row["event_name"] == "Lead"
    ]
    total = sum(row["count"] for row in lead_hours)
    assert 0.1 <= total / (14 * 24) <= 0.5
    assert len(lead_hours) < 0.5 * 14 * 24  # most hours have none


def test_files_agree_with_each_other(two_weeks: tuple[GeneratedFiles, float], lines: list[dict]) -> None:
    files = two_weeks[0]
    state = json.loads(files.meta_state_path.read_text())
    pixel = state["pixels"][files.pixel_id]
    assert state["now"] == "2026-11-16T00:00:00Z"
    assert "sim-token" in state["tokens"]["valid"] and state["tokens"]["expired"] == []
    delivered = [line for line in lines if line.get("delivery", {}).get("status") == "delivered"]
    assert sum(row["count"] for row in pixel["server_hours"]) == len(delivered) == files.delivered_events
    assert sum(row["count"] for row in pixel["browser_hours"]) == files.browser_events
    orders = {order["order_id"] for order in read_lines(files.orders_path)}
    assert len(orders) == files.orders
    server_orders = {
        line["event"]["custom_data"]["order_id"]
        for line in lines
        if line["event"]["event_name"] == "Purchase"
    }
    assert server_orders <= orders and len(server_orders) >= 0.9 * len(orders)
    sample = pixel["server_hours"][300]
    assert sample["with_event_id"] == sample["count"]
    assert set(sample["match_keys"]) == {
        "em",
        "ph",
        "fbc",
        "fbp",
        "client_ip_address",
        "client_user_agent",
        "external_id",
    }
    assert 0 < sample["lag_seconds_p50"] < 60


def test_sales_spike_lifts_both_sides(tmp_path: Path) -> None:
    sale = SalesSpike(start=START + timedelta(days=8), end=START + timedelta(days=9), multiplier=3.0)
    config = ShopConfig(timezone="UTC", sales_spikes=[sale])
    files = generate(
        config, start=START + timedelta(days=7), end=START + timedelta(days=9), seed=3, out_dir=tmp_path
    )
    pixel = json.loads(files.meta_state_path.read_text())["pixels"][files.pixel_id]
    for side in ("browser_hours", "server_hours"):
        day: Counter[str] = Counter()
        for row in pixel[side]:
            day[row["hour"][:10]] += row["count"]
        assert 2.3 <= day["2026-11-10"] / day["2026-11-09"] <= 3.8, side


def test_batch_sender_groups_events_into_requests(tmp_path: Path) -> None:
    config = ShopConfig(batch_interval_minutes=15)
    files = generate(config, start=START, end=START + timedelta(hours=6), seed=5, out_dir=tmp_path)
    batch_lines = read_lines(files.events_path)
    per_request = Counter(line["delivery"]["request_id"] for line in batch_lines)
    for line in batch_lines:
        received = parse_iso(line["received_at"])
        assert received.minute % 15 == 0 and received.second == 0
        assert line["delivery"]["batch_size"] == per_request[line["delivery"]["request_id"]]
        assert line["event"]["event_time"] < received.timestamp() <= line["event"]["event_time"] + 900
    assert max(per_request.values()) > 1
