"""The relay's payload repairs (repair mode): only where the sender's intent is certain."""

from __future__ import annotations

from tools.relay.payload_repair import repair_payload

SECONDS = 1_764_600_000


def test_milliseconds_become_seconds_and_plausible_seconds_stay() -> None:
    assert repair_payload({"event_time": SECONDS * 1000 + 999})[0]["event_time"] == SECONDS
    assert repair_payload({"event_time": str(SECONDS * 1000)})[0]["event_time"] == SECONDS
    assert repair_payload({"event_time": SECONDS}) == ({"event_time": SECONDS}, [])
    # Too large for milliseconds of a real event (microseconds): left for validation to refuse.
    assert repair_payload({"event_time": SECONDS * 1_000_000})[1] == []
    assert repair_payload({"event_time": True})[1] == []


def test_value_text_only_when_a_plain_decimal() -> None:
    for text, number in (("19.99", 19.99), (" 20 ", 20.0), ("-5.5", -5.5)):
        event, repairs = repair_payload({"event_name": "Purchase", "custom_data": {"value": text, "currency": "EUR"}})
        assert event["custom_data"]["value"] == number and repairs == ["value_text"]
    for text in ("19,99", "$20", "1e3", "nan", "inf", "", "1.2.3"):
        event = {"event_name": "Purchase", "custom_data": {"value": text, "currency": "EUR"}}
        assert repair_payload(event) == (event, []), text


def test_a_missing_currency_comes_only_from_the_pixels_configuration() -> None:
    event = {"event_name": "Purchase", "custom_data": {"value": 10}}
    assert repair_payload(event) == (event, [])
    repaired, repairs = repair_payload(event, default_currency="EUR")
    assert repaired["custom_data"] == {"value": 10, "currency": "EUR"} and repairs == ["currency_default"]
    assert event == {"event_name": "Purchase", "custom_data": {"value": 10}}  # the input is not changed
    assert repair_payload({"event_name": "Purchase"}, default_currency="EUR")[0]["custom_data"] == {"currency": "EUR"}
    # Another event's currency is its own business; a sent currency is never replaced.
    assert repair_payload({"event_name": "AddToCart", "custom_data": {}}, default_currency="EUR")[1] == []
    kept = {"event_name": "Purchase", "custom_data": {"value": 1, "currency": "usd"}}
    assert repair_payload(kept, default_currency="EUR") == (kept, [])


def test_non_events_are_left_for_validation() -> None:
    assert repair_payload(["not", "an", "event"]) == (["not", "an", "event"], [])


def test_user_data_numbers_become_strings_and_booleans_are_dropped() -> None:
    event = {"user_data": {"zp": 94035, "fb_login_id": 1234567890123456, "external_id": True,
                           "ph": [16505550143, False], "em": ["a" * 64], "country": "us", "custom": 7}}
    repaired, repairs = repair_payload(event)
    assert repaired["user_data"] == {"zp": "94035", "fb_login_id": "1234567890123456", "ph": ["16505550143"],
                                     "em": ["a" * 64], "country": "us", "custom": 7}
    assert repairs == ["user_data_strings"]
    assert repair_payload({"user_data": {"zp": 94035.0}})[0]["user_data"] == {"zp": "94035"}
    clean = {"user_data": {"zp": "94035", "em": ["a" * 64]}}
    assert repair_payload(clean) == (clean, [])
