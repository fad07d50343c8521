"""validate_event / validate_batch: every problem code, what Meta answers for it, and no PII in messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tools.meta.normalize import sha256_hex
from tools.meta.validate import MAX_EVENTS_PER_REQUEST, EventProblem, validate_batch, validate_event
from tools.timeutil import to_unix

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EMAIL_HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


def good_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "Purchase",
        "event_time": to_unix(NOW - timedelta(minutes=10)),
        "event_id": "ord-1",
        "action_source": "website",
        "event_source_url": "https://shop.example/thanks",
        "user_data": {"em": [EMAIL_HASH], "client_ip_address": "203.0.113.9",
                      "client_user_agent": "Mozilla/5.0", "fbc": "fb.1.1763632000000.AbCd",
                      "fbp": "fb.1.1763600000000.123"},
        "custom_data": {"currency": "USD", "value": 42.5},
    }
    event.update(changes)
    return event


def codes(problems: list[EventProblem]) -> list[str]:
    return [problem.code for problem in problems]


def only(problems: list[EventProblem], code: str) -> EventProblem:
    matching = [problem for problem in problems if problem.code == code]
    assert len(matching) == 1, codes(problems)
    return matching[0]


def test_a_good_event_has_no_problems() -> None:
    assert validate_event(good_event(), now=NOW) == []
    assert validate_batch([good_event(), good_event(event_id="ord-2")], now=NOW) == []


def test_missing_event_name() -> None:
    event = good_event()
    del event["event_name"]
    problem = only(validate_event(event, now=NOW, index=3), "missing_event_name")
    assert (problem.field, problem.event_index, problem.meta_code, problem.severity) == (
        "event_name", 3, 100, "error")
    assert problem.message.startswith("event 3: ")
    assert codes(validate_event(good_event(event_name="  "), now=NOW)) == ["missing_event_name"]


def test_missing_and_invalid_event_time() -> None:
    event = good_event()
    del event["event_time"]
    assert codes(validate_event(event, now=NOW)) == ["missing_event_time"]
    assert codes(validate_event(good_event(event_time="yesterday"), now=NOW)) == ["event_time_invalid"]
    assert codes(validate_event(good_event(event_time=1.5e9 + 0.5), now=NOW)) == ["event_time_invalid"]
    assert codes(validate_event(good_event(event_time=True), now=NOW)) == ["event_time_invalid"]
    # Form encodings deliver digits as strings: accepted.
    assert validate_event(good_event(event_time=str(to_unix(NOW))), now=NOW) == []


def test_event_time_in_milliseconds() -> None:
    event = good_event(event_time=to_unix(NOW) * 1000)
    problem = only(validate_event(event, now=NOW), "event_time_not_seconds")
    assert problem.severity == "error"


def test_event_time_too_old() -> None:
    old = to_unix(NOW - timedelta(days=7, minutes=1))
    problem = only(validate_event(good_event(event_time=old), now=NOW), "event_time_too_old")
    assert (problem.meta_code, problem.meta_subcode, problem.severity) == (100, 2804003, "error")
    assert "Event Timestamp Too Old" in problem.message
    assert validate_event(good_event(event_time=to_unix(NOW - timedelta(days=6, hours=23))), now=NOW) == []


def test_physical_store_events_may_be_62_days_old() -> None:
    store = {"action_source": "physical_store", "event_source_url": None}
    fine = good_event(event_time=to_unix(NOW - timedelta(days=61)), **store)
    assert validate_event(fine, now=NOW) == []
    too_old = good_event(event_time=to_unix(NOW - timedelta(days=63)), **store)
    assert only(validate_event(too_old, now=NOW), "event_time_too_old").meta_subcode == 2804003


def test_event_time_in_the_future_is_a_warning_beyond_five_minutes() -> None:
    assert validate_event(good_event(event_time=to_unix(NOW + timedelta(minutes=4))), now=NOW) == []
    future = good_event(event_time=to_unix(NOW + timedelta(hours=2)))
    problem = only(validate_event(future, now=NOW), "event_time_in_future")
    assert problem.severity == "warning"
    assert "120 minutes" in problem.message


def test_action_source_required_and_from_metas_list() -> None:
    event = good_event()
    del event["action_source"]
    assert only(validate_event(event, now=NOW), "missing_action_source").field == "action_source"
    assert "invalid_action_source" in codes(validate_event(good_event(action_source="web"), now=NOW))
    other = good_event(action_source="email", event_source_url=None)
    assert validate_event(other, now=NOW) == []


def test_website_events_need_user_agent_and_source_url() -> None:
    event = good_event(event_source_url="")
    del event["user_data"]["client_user_agent"]
    found = codes(validate_event(event, now=NOW))
    assert "missing_event_source_url" in found
    assert "missing_client_user_agent" in found


def test_malformed_fbc_rejects_with_2804001() -> None:
    event = good_event()
    event["user_data"]["fbc"] = "fb.1.1763632000.AbCd"  # seconds, not milliseconds
    problem = only(validate_event(event, now=NOW), "fbc_malformed")
    assert (problem.meta_subcode, problem.severity, problem.field) == (2804001, "error", "fbc")
    assert "1763632000" not in problem.message


def test_malformed_fbp_is_a_warning() -> None:
    event = good_event()
    event["user_data"]["fbp"] = "1098115397"
    assert only(validate_event(event, now=NOW), "fbp_malformed").severity == "warning"


def test_no_customer_information_is_2804050() -> None:
    event = good_event(action_source="other", event_source_url=None, user_data={"em": sha256_hex("")})
    problem = only(validate_event(event, now=NOW), "insufficient_customer_information")
    assert (problem.meta_code, problem.meta_subcode, problem.severity) == (100, 2804050, "error")
    assert "insufficient_customer_information" in codes(
        validate_event(good_event(action_source="other", user_data={}), now=NOW))


def test_missing_or_non_object_user_data() -> None:
    event = good_event(action_source="other")
    del event["user_data"]
    assert codes(validate_event(event, now=NOW)) == ["missing_user_data"]
    assert codes(validate_event(good_event(action_source="other", user_data="x"), now=NOW)) == [
        "user_data_not_object"]


def test_hashing_problems_are_warnings_that_never_show_the_value() -> None:
    user_data = {
        "em": "Jane.Secret@shop.example",            # raw
        "ph": "not a phone",                         # raw, cannot normalize
        "fn": sha256_hex("null"),                    # placeholder
        "ln": sha256_hex("doe").upper(),             # upper-case hex
        "ct": "0123456789abcdef0123456789abcdef",    # md5-length hex
        "client_ip_address": sha256_hex("1.2.3.4"),  # must not be hashed
        "email": "jane.secret@shop.example",         # not a Meta field
        "client_user_agent": "Mozilla/5.0",
    }
    problems = validate_event(good_event(user_data=user_data), now=NOW, index=0)
    by_code = {problem.code: problem for problem in problems}
    assert {"user_data_raw_pii", "user_data_invalid", "user_data_placeholder", "user_data_uppercase_hex",
            "user_data_not_sha256", "user_data_must_not_hash", "user_data_unknown_field"} <= set(by_code)
    assert by_code["user_data_placeholder"].field == "fn"
    assert all(problem.severity == "warning" for problem in problems)
    text = json.dumps([problem.message for problem in problems]).lower()
    assert "secret" not in text
    assert "not a phone" not in text


def test_event_that_is_not_an_object() -> None:
    assert codes(validate_event(["x"], now=NOW, index=2)) == ["event_not_object"]  # type: ignore[arg-type]


def test_errors_come_before_warnings() -> None:
    event = good_event(event_time=to_unix(NOW - timedelta(days=9)))
    event["user_data"]["fbp"] = "bad"
    severities = [problem.severity for problem in validate_event(event, now=NOW)]
    assert severities == sorted(severities)  # "error" < "warning"
    assert severities[0] == "error"


@pytest.mark.parametrize("data", [{"event_name": "x"}, "[]", None, 5])
def test_data_must_be_a_list(data: Any) -> None:
    assert codes(validate_batch(data, now=NOW)) == ["data_not_list"]


def test_data_must_not_be_empty() -> None:
    assert codes(validate_batch([], now=NOW)) == ["data_empty"]


def test_at_most_1000_events_per_request() -> None:
    assert MAX_EVENTS_PER_REQUEST == 1000
    events = [good_event(event_id=f"ord-{i}") for i in range(MAX_EVENTS_PER_REQUEST)]
    assert validate_batch(events, now=NOW) == []
    events.append(good_event(event_id="ord-last"))
    problem = only(validate_batch(events, now=NOW), "too_many_events")
    assert (problem.severity, problem.event_index, problem.meta_code) == ("error", None, 100)


def test_batch_problems_carry_the_event_index() -> None:
    bad = good_event()
    del bad["event_name"]
    problems = validate_batch([good_event(), bad], now=NOW)
    assert [(problem.code, problem.event_index) for problem in problems] == [("missing_event_name", 1)]


def test_batch_accepts_json_encoded_events_like_the_sdk_sends() -> None:
    assert validate_batch([json.dumps(good_event())], now=NOW) == []
    assert codes(validate_batch(["{not json"], now=NOW)) == ["event_not_object"]


def test_repeated_event_id_in_one_batch_is_a_warning() -> None:
    problems = validate_batch([good_event(), good_event()], now=NOW)
    problem = only(problems, "duplicate_event_id")
    assert (problem.event_index, problem.severity) == (1, "warning")
    assert validate_batch([good_event(), good_event(event_name="AddToCart")], now=NOW) == []
