"""prepare_user_data: what is stored and sent, and what is flagged, per field."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tools.meta.normalize import sha256_hex
from tools.meta.userdata import is_valid_fbc, is_valid_fbp, prepare_user_data

EMAIL_HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
PHONE_HASH = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
FBC = "fb.1.1763632000000.IwAR2xYz-Ab_Cd"
FBP = "fb.1.1763600000000.1098115397"


def test_raw_pii_is_normalized_hashed_and_flagged() -> None:
    prepared = prepare_user_data({"em": " John_Smith@gmail.com ", "ph": ["(650)555-1212"], "fn": "Mary"})
    assert prepared.user_data == {
        "em": EMAIL_HASH,
        "ph": [PHONE_HASH],
        "fn": "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
    }
    assert prepared.raw == {"em", "ph", "fn"}
    assert prepared.keys_present == {"em", "ph", "fn"}
    assert prepared.top_values["em"] == EMAIL_HASH


def test_no_raw_value_survives_anywhere() -> None:
    user_data = {"em": "jane@shop.example", "ph": "+1 650 555 0000", "fn": "Jane", "ln": "Doe",
                 "ct": "Springfield", "zp": "62704", "db": "1985-04-12", "external_id": "cust-77",
                 "email": "jane@shop.example", "st": "!!!"}
    prepared = prepare_user_data(user_data)
    stored = [*prepared.user_data.values(), *prepared.top_values.values()]
    assert stored and all(re.fullmatch(r"[0-9a-f]{64}", value) for value in stored)
    dumped = json.dumps([prepared.user_data, prepared.top_values])
    for raw in ("jane", "Jane", "Doe", "Springfield", "cust-77"):
        assert raw not in dumped
    assert "email" not in prepared.user_data
    assert {"email", "st"} <= prepared.invalid


def test_default_country_applies_to_phones() -> None:
    prepared = prepare_user_data({"ph": "07700 900123"}, default_country="GB")
    assert prepared.user_data["ph"] == sha256_hex("447700900123")


def test_already_hashed_is_not_hashed_twice_and_uppercase_is_lowered() -> None:
    prepared = prepare_user_data({"em": EMAIL_HASH, "ph": PHONE_HASH.upper()})
    assert prepared.user_data == {"em": EMAIL_HASH, "ph": PHONE_HASH}
    assert prepared.uppercase_hex == {"ph"}
    assert prepared.raw == frozenset()
    assert prepared.keys_present == {"em", "ph"}


def test_numbers_are_accepted_as_strings() -> None:
    prepared = prepare_user_data({"zp": 94035, "ph": 16505551212})
    assert prepared.user_data == {"zp": sha256_hex("94035"), "ph": PHONE_HASH}


@pytest.mark.parametrize(
    "placeholder", ["", "null", "undefined", "none", "0", "test@test.com", "[object object]"]
)
def test_placeholder_hashes_are_flagged_and_not_usable(placeholder: str) -> None:
    digest = hashlib.sha256(placeholder.encode()).hexdigest()
    prepared = prepare_user_data({"em": digest})
    assert prepared.placeholder == {"em"}
    assert "em" not in prepared.keys_present
    assert prepared.user_data == {"em": digest}  # observe mode keeps what was sent
    assert prepare_user_data({"em": digest}, repair=True).user_data == {}


def test_raw_placeholders_are_flagged() -> None:
    prepared = prepare_user_data({"em": "undefined", "ph": "null", "fn": "[object Object]"})
    assert prepared.placeholder == {"em", "ph", "fn"}
    assert prepared.keys_present == frozenset()
    assert prepared.user_data["em"] == sha256_hex("undefined")


def test_raw_value_that_normalizes_to_a_placeholder() -> None:
    prepared = prepare_user_data({"em": " TEST@test.com"})
    assert prepared.placeholder == {"em"}
    assert prepared.raw == {"em"}
    assert prepared.keys_present == frozenset()


def test_md5_and_truncated_hashes_are_not_sha256() -> None:
    md5 = hashlib.md5(b"john_smith@gmail.com").hexdigest()
    prepared = prepare_user_data({"em": md5, "ph": PHONE_HASH[:40]})
    assert prepared.not_sha256 == {"em", "ph"}
    assert prepared.keys_present == frozenset()
    assert prepared.raw == frozenset()
    assert prepare_user_data({"em": md5}, repair=True).user_data == {}


def test_digits_of_a_phone_are_not_mistaken_for_a_hash() -> None:
    prepared = prepare_user_data({"ph": "16505551212", "db": "19900131", "zp": "94035"})
    assert prepared.not_sha256 == frozenset()
    assert prepared.raw == {"ph", "db", "zp"}


def test_must_not_hash_fields_are_left_alone() -> None:
    user_data = {"client_ip_address": "2001:db8::1", "client_user_agent": "Mozilla/5.0 (X11)",
                 "fbc": FBC, "fbp": FBP, "lead_id": "1234", "madid": "ABCD-ef"}
    prepared = prepare_user_data(user_data)
    assert prepared.user_data == user_data
    assert prepared.keys_present == set(user_data)
    assert prepared.raw == prepared.must_not_hash == prepared.malformed == frozenset()


def test_hashed_must_not_hash_fields_are_flagged() -> None:
    hashed_ip = sha256_hex("203.0.113.9")
    prepared = prepare_user_data({"client_ip_address": hashed_ip, "fbp": sha256_hex(FBP)}, repair=True)
    assert prepared.must_not_hash == {"client_ip_address", "fbp"}
    assert "client_ip_address" not in prepared.keys_present
    # Untouched even in repair mode, except that a hashed fbp is also malformed and is dropped.
    assert prepared.user_data == {"client_ip_address": hashed_ip}
    assert prepared.malformed == {"fbp"}


@pytest.mark.parametrize(
    "fbc",
    [FBC, "fb.0.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890", f"{FBC}.AQ", f"{FBC}.Bg",
     f"{FBC}.Ab12_-Xy"],
)
def test_valid_fbc(fbc: str) -> None:
    assert is_valid_fbc(fbc)
    prepared = prepare_user_data({"fbc": fbc}, repair=True)
    assert prepared.user_data == {"fbc": fbc}  # fbclid case kept, never modified
    assert prepared.malformed == frozenset()


@pytest.mark.parametrize(
    "fbc",
    [
        "fb.1.1763632000.AbCd",             # creation time in seconds, not milliseconds
        "IwAR2xYz",                          # bare fbclid
        "fb.1.1763632000000",                # 3 parts
        "fb.1.1763632000000.AbCd.XX",        # bad language token
        "fb.1.1763632000000.AbCd.AQ.extra",  # 6 parts
        "fbc.1.1763632000000.AbCd",
        "fb.x.1763632000000.AbCd",
        "",
    ],
)
def test_malformed_fbc_is_flagged_and_dropped_only_in_repair(fbc: str) -> None:
    assert not is_valid_fbc(fbc)
    observed = prepare_user_data({"fbc": fbc, "em": EMAIL_HASH})
    assert observed.malformed == {"fbc"}
    assert observed.user_data["fbc"] == fbc
    assert "fbc" not in observed.keys_present
    repaired = prepare_user_data({"fbc": fbc, "em": EMAIL_HASH}, repair=True)
    assert "fbc" not in repaired.user_data
    assert repaired.user_data["em"] == EMAIL_HASH


@pytest.mark.parametrize(("fbp", "valid"), [
    (FBP, True), (f"{FBP}.Aw", True), ("fb.2.1558571054389.1098115397", True),
    ("fb.1.1558571054.1098115397", False), ("1098115397", False), ("fb.1.1558571054389.abc!", False),
])
def test_fbp_format(fbp: str, valid: bool) -> None:
    assert is_valid_fbp(fbp) is valid
    assert (prepare_user_data({"fbp": fbp}).malformed == {"fbp"}) is not valid


def test_list_values_keep_their_shape_and_drop_only_bad_items() -> None:
    prepared = prepare_user_data({"em": ["a@b.co", "not-an-email", EMAIL_HASH.upper()]})
    assert prepared.user_data == {"em": [sha256_hex("a@b.co"), EMAIL_HASH]}
    assert prepared.invalid == {"em"}
    assert prepared.uppercase_hex == {"em"}
    assert prepared.top_values["em"] == sha256_hex("a@b.co")


def test_unusable_types_are_invalid_and_none_is_absent() -> None:
    prepared = prepare_user_data({"em": {"nested": "x"}, "ph": None, "fn": True})
    assert prepared.user_data == {}
    assert prepared.invalid == {"em", "fn"}
    assert prepared.keys_present == frozenset()
