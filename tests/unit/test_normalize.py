"""Normalization and hashing of customer-information values by Meta's documented rules."""

from __future__ import annotations

import hashlib

import pytest

from tools.meta.normalize import (
    HASHED_FIELDS,
    MUST_NOT_HASH,
    PLACEHOLDER_HASHES,
    NormalizationError,
    is_placeholder_hash,
    looks_sha256,
    normalize_field,
    sha256_hex,
)

# Meta's documented examples (docs/meta-api.md): raw -> normalized -> sha256.
META_VECTORS = [
    ("em", " John_Smith@gmail.com ", "john_smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("ph", "(650)555-1212", "16505551212",
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("fn", "Mary", "mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("country", "US", "us", "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"),
]


@pytest.mark.parametrize(("field", "raw", "normalized", "digest"), META_VECTORS)
def test_meta_documented_vectors(field: str, raw: str, normalized: str, digest: str) -> None:
    assert normalize_field(field, raw) == normalized
    assert sha256_hex(normalized) == digest


def test_field_sets_follow_meta() -> None:
    assert {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"} == HASHED_FIELDS
    assert {"client_ip_address", "client_user_agent", "fbc", "fbp", "ctwa_clid"} <= MUST_NOT_HASH
    assert not HASHED_FIELDS & MUST_NOT_HASH


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(650)555-1212", "US", "16505551212"),          # US number without country code
        ("+1 650-555-1212", "US", "16505551212"),        # with '+' and country code
        ("1-650-555-1212", "US", "16505551212"),         # country code without '+'
        ("650.555.1212 ext. 12", "US", "16505551212"),   # extension dropped
        ("+44 7700 900123", "US", "447700900123"),       # foreign number, US default
        ("447700900123", "US", "447700900123"),          # foreign country code without '+'
        ("07700 900123", "GB", "447700900123"),          # trunk zero dropped, GB default
        ("0044 7700 900123", "GB", "447700900123"),      # 00 international prefix
        ("030 1234567", "DE", "49301234567"),            # German landline, DE default
        ("16505551212", "GB", "16505551212"),            # US number with country code, GB default
    ],
)
def test_phone_numbers_get_country_code_and_no_leading_zeros(raw: str, country: str, expected: str) -> None:
    assert normalize_field("ph", raw, default_country=country) == expected


def test_phone_default_country_decides_a_national_number() -> None:
    assert normalize_field("ph", "6505551212", default_country="US") == "16505551212"
    assert normalize_field("ph", "6505551212", default_country="DE").startswith("49")


@pytest.mark.parametrize("raw", ["abc", "12", "call me maybe", "+"])
def test_phone_that_is_not_a_number_is_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError, match=r"^ph: "):
        normalize_field("ph", raw)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("fn", "Valéry", "valéry"),                 # UTF-8 kept
        ("fn", "VALE\u0301RY", "valéry"),           # decomposed accent -> same as precomposed
        ("ln", "O'Brien-Smith", "obriensmith"),     # punctuation removed
        ("fn", "  Mary   Ann ", "mary ann"),
        ("ct", "New York", "newyork"),
        ("ct", "St. Louis", "stlouis"),
        ("ct", "São Paulo", "sãopaulo"),
        ("em", "Person@Example.COM", "person@example.com"),
        ("external_id", "  Order-ABC-1 ", "Order-ABC-1"),  # trimmed only, case kept
    ],
)
def test_text_fields(field: str, raw: str, expected: str) -> None:
    assert normalize_field(field, raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("California", "ca"), ("CA", "ca"), ("new york", "ny"), ("District of Columbia", "dc"),
     ("Puerto Rico", "pr"), ("Ontario", "ontario"), ("Île-de-France", "îledefrance")],
)
def test_state_names_map_to_codes(raw: str, expected: str) -> None:
    assert normalize_field("st", raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94035", "US", "94035"),
        ("94035-1234", "US", "94035"),    # zip+4 truncated
        ("94035 1234", "US", "94035"),
        ("940351234", "US", "94035"),
        ("940351234", "DE", "940351234"),  # nine bare digits are only zip+4 in the US
        ("94035-1234", "DE", "94035"),    # the dash form is unmistakable
        ("M1 1AE", "GB", "m11ae"),         # UK as documented
        ("SW1A 1AA", "GB", "sw1a1aa"),
        ("02134", "US", "02134"),         # leading zero kept
    ],
)
def test_zip_codes(raw: str, country: str, expected: str) -> None:
    assert normalize_field("zp", raw, default_country=country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("US", "us"), ("usa", "us"), ("U.S.A.", "us"), ("United States", "us"), ("Germany", "de"),
     ("DEU", "de"), ("United Kingdom", "gb"), ("UK", "gb"), ("England", "gb"), ("Türkiye", "tr"),
     ("Turkey", "tr"), ("Viet Nam", "vn"), ("840", "us")],
)
def test_country_names_and_codes(raw: str, expected: str) -> None:
    assert normalize_field("country", raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("1990-01-31", "US", "19900131"),
        ("19900131", "US", "19900131"),
        ("1990/01/31", "US", "19900131"),
        ("01/31/1990", "US", "19900131"),
        ("31/01/1990", "US", "19900131"),  # day > 12: only one reading
        ("31.01.1990", "DE", "19900131"),
        ("02/03/1990", "US", "19900203"),  # ambiguous: month first in the US
        ("02/03/1990", "GB", "19900302"),  # day first elsewhere
        ("January 31, 1990", "US", "19900131"),
        ("31 Jan 1990", "US", "19900131"),
        ("1990-01-31T00:00:00Z", "US", "19900131"),
    ],
)
def test_birth_dates_in_several_formats(raw: str, country: str, expected: str) -> None:
    assert normalize_field("db", raw, default_country=country) == expected


@pytest.mark.parametrize("raw", ["1990-02-30", "yesterday", "13/13/1990", "1850-01-01"])
def test_bad_birth_dates(raw: str) -> None:
    with pytest.raises(NormalizationError, match=r"^db: "):
        normalize_field("db", raw)


@pytest.mark.parametrize(("raw", "expected"), [("F", "f"), ("female", "f"), ("Male", "m"), (" m ", "m")])
def test_gender(raw: str, expected: str) -> None:
    assert normalize_field("ge", raw) == expected


@pytest.mark.parametrize(
    ("field", "raw"),
    [("ge", "x"), ("em", "not-an-email"), ("country", "Atlantis"), ("zp", "!!"), ("fn", "..."),
     ("external_id", "   "), ("ct", "")],
)
def test_unnormalizable_values_raise_without_echoing_the_value(field: str, raw: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_field(field, raw)
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.field == field
    if raw.strip():
        assert raw not in str(info.value)


def test_error_never_contains_the_raw_pii() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_field("em", "jane.doe.at.example")
    assert "jane" not in str(info.value)


def test_unknown_and_must_not_hash_fields_are_refused() -> None:
    with pytest.raises(NormalizationError, match="not a customer-information field"):
        normalize_field("email", "a@b.co")
    with pytest.raises(NormalizationError, match="must not be hashed"):
        normalize_field("fbc", "fb.1.1763632000000.AbCd")


def test_already_hashed_value_is_not_normalized_again() -> None:
    digest = sha256_hex("mary")
    with pytest.raises(NormalizationError, match="already a SHA-256"):
        normalize_field("fn", digest.upper())


def test_looks_sha256() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert looks_sha256(digest)
    assert looks_sha256(digest.upper())
    assert looks_sha256(f" {digest} ")
    assert not looks_sha256(digest[:-1])
    assert not looks_sha256(hashlib.md5(b"x").hexdigest())
    assert not looks_sha256("g" * 64)


@pytest.mark.parametrize(
    "placeholder", ["", "null", "undefined", "none", "0", "test@test.com", "[object object]",
                    "[object Object]", "NULL", "None", "Undefined"],
)
def test_placeholder_hashes(placeholder: str) -> None:
    digest = hashlib.sha256(placeholder.encode()).hexdigest()
    assert digest in PLACEHOLDER_HASHES or digest.lower() in PLACEHOLDER_HASHES
    assert is_placeholder_hash(digest)
    assert is_placeholder_hash(digest.upper())


def test_documented_empty_string_hash_is_a_placeholder() -> None:
    assert is_placeholder_hash("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_real_values_are_not_placeholders() -> None:
    assert not is_placeholder_hash(sha256_hex("john_smith@gmail.com"))
    assert not is_placeholder_hash(sha256_hex("16505551212"))
    assert all(h == h.lower() and len(h) == 64 for h in PLACEHOLDER_HASHES)
