"""Sender fingerprints from requests and import lines: Meta's SDK user agents, partner_agent, the
envelope's ``sender`` object, event shapes (names only), and nothing of a customer or a token kept."""

from __future__ import annotations

import pytest

from tools.senders.fingerprint import event_shape, sender_from_envelope, sender_from_request, sender_info
from tools.senders.types import SenderChange, change_from_json, short_after
from tools.timeutil import parse_iso

CANARY_TOKEN = "EAAGcanary" + "x7" * 40
CANARY_EMAIL = "canary.person@example.com"


@pytest.mark.parametrize(("agent", "sdk", "version"), [
    ("fbbizsdk-php-v17.0.0", "facebook-php-business-sdk", "17.0.0"),
    ("fbbizsdk-nodejs-v18.0.1", "facebook-nodejs-business-sdk", "18.0.1"),
    ("fbbizsdk-python-v19.0.0", "facebook-python-business-sdk", "19.0.0"),
    ("fbbizsdk-java-v20.0.2 (custom)", "facebook-java-business-sdk", "20.0.2"),
])
def test_meta_business_sdks_are_recognised_by_their_user_agent(agent: str, sdk: str, version: str) -> None:
    info = sender_from_request(agent, {})
    assert (info.sdk, info.sdk_version) == (sdk, version)
    assert info.identity == f"sdk:{sdk}" and info.label == f"{sdk} {version}"


def test_partner_agent_names_the_plugin_and_wins_over_the_sdk() -> None:
    info = sender_from_request("fbbizsdk-php-v17.0.0", {"partner_agent": "woo-capi-3.3.0"})
    assert (info.plugin, info.plugin_version) == ("woo-capi", "3.3.0")
    assert info.identity == "plugin:woo-capi" and info.label == "woo-capi 3.3.0"
    older = sender_from_request("fbbizsdk-php-v17.0.0", {"partner_agent": "woo-capi-3.2.1"})
    # One identity whatever the version (changes are tracked per identity), two fingerprints.
    assert older.identity == info.identity and older.key() != info.key()


def test_an_unknown_agent_is_its_product_name() -> None:
    info = sender_from_request("WordPress/6.4.2; https://shop.example", {})
    assert info.identity == "agent:wordpress" and info.sdk is None and info.plugin is None


def test_envelope_sender_is_optional_and_checked_field_by_field() -> None:
    assert sender_from_envelope(None) is None
    info = sender_from_envelope({"user_agent": "fbbizsdk-nodejs-v18.0.1", "plugin": "shop-capi",
                                 "plugin_version": "2.0"})
    assert info is not None and info.label == "shop-capi 2.0" and info.sdk == "facebook-nodejs-business-sdk"
    with pytest.raises(ValueError, match="sender must be an object"):
        sender_from_envelope("woo")
    with pytest.raises(ValueError, match=r"sender\.partner_agent must be a string"):
        sender_from_envelope({"partner_agent": 3})
    with pytest.raises(ValueError, match="unknown field"):
        sender_from_envelope({"token": "x"})


def test_tokens_and_emails_in_a_header_never_reach_the_fingerprint() -> None:
    info = sender_from_request(f"my-sender/1.0 {CANARY_TOKEN} {CANARY_EMAIL}",
                               {"partner_agent": f"shop-{CANARY_EMAIL}", "access_token": CANARY_TOKEN})
    text = repr(info.as_json()) + info.label + info.identity
    assert CANARY_TOKEN not in text and CANARY_EMAIL not in text and "canary" not in text
    assert info.user_agent == "my-sender/1.0 [removed] [removed]"


def test_event_shape_holds_names_never_values() -> None:
    event = {"event_name": "Purchase", "event_time": 1, "action_source": "website",
             "user_data": {"em": [CANARY_EMAIL], "client_user_agent": "Mozilla/5.0 (canary browser)", "ph": "",
                           "fbp": "fb.1.1.1"},
             "custom_data": {"value": 12.5, "currency": "EUR"}}
    shape = event_shape(event)
    assert shape is not None
    assert shape.match_keys == {"em", "client_user_agent", "fbp"}  # an empty phone is not a key in use
    assert shape.fields == {"event_name", "event_time", "action_source", "custom_data.value",
                            "custom_data.currency"}
    flat = repr(shape)
    assert CANARY_EMAIL not in flat and "canary browser" not in flat
    assert event_shape({"event_time": 1}) is None and event_shape("x") is None


def test_a_change_reads_as_a_sentence_and_round_trips_as_json() -> None:
    change = SenderChange(at=parse_iso("2026-11-12T14:02:00Z"), kind="version", sender="plugin:woo-capi",
                          before="woo-capi 3.2.1", after="woo-capi 3.3.0")
    assert change.describe() == "the sender changed from woo-capi 3.2.1 to 3.3.0"
    assert change_from_json(change.as_json()) == change
    keys = SenderChange(at=change.at, kind="match_keys", sender="plugin:woo-capi", before="em, fbp",
                        after="fbp", event_name="Purchase")
    assert keys.describe() == "the match keys of Purchase changed from em, fbp to fbp"
    assert short_after("a 1", "b 2") == "b 2"


def test_explicit_names_win_over_parsed_ones() -> None:
    info = sender_info(user_agent="fbbizsdk-php-v17.0.0", sdk="custom-sdk", sdk_version="1")
    assert (info.sdk, info.sdk_version) == ("custom-sdk", "1")
