"""The PII guard: what it masks, and what it must leave alone."""

from __future__ import annotations

import pytest

from agent.llm.guard import PromptLeak, assert_prompt_safe, scrub, scrub_with_report


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to john.smith+ads@shop.example.co.uk please", "email"),
        ("JOHN_SMITH@GMAIL.COM", "email"),
        ("call (650) 555-1212", "phone"),
        ("call 650-555-1212", "phone"),
        ("call 650.555.1212", "phone"),
        ("call +1 650 555 1212", "phone"),
        ("call +16505551212", "phone"),
        ("call +44 20 7946 0958", "phone"),
        ("call 06 12 34 56 78", "phone"),
        ("call 555-1234", "phone"),
        ("client 192.168.1.10 sent it", "ip"),
        ("client 203.0.113.7.", "ip"),
        ("client 2001:db8::1, then", "ip"),
        ("client ::ffff:10.0.0.1 mapped", "ip"),
        ("client fe80::1%eth0 link-local", "ip"),
        ("client 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip"),
    ],
)
def test_pii_is_masked(text, kind):
    clean, report = scrub_with_report(text)
    assert report.counts == {kind: 1}
    assert f"[{kind}]" in clean
    with pytest.raises(PromptLeak) as caught:
        assert_prompt_safe(text)
    assert caught.value.kinds == {kind: 1}


def test_the_leak_error_names_kinds_never_values():
    with pytest.raises(PromptLeak) as caught:
        assert_prompt_safe("from jane@example.com at 10.1.2.3")
    assert "jane@example.com" not in str(caught.value) and "10.1.2.3" not in str(caught.value)
    assert caught.value.kinds == {"email": 1, "ip": 1}


@pytest.mark.parametrize(
    "text",
    [
        "em 62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 upper-case hex",
        "at 2026-11-20T10:00:03Z and 2026-11-20T10:00:03.123+01:00 and 2026-11-20 10:00:03 and 2026-11-20",
        "window 2026-11-20T10:00:00+00:00/2026-11-20T11:00:00+00:00",
        "pixel 1234567890123456 and dataset 123456789012",
        "event_time 1763632800 ms 1763632800123",
        "counts 42, 1200 and 1,234,567; value 12345.67 and 1234567.89; ratio 0.857",
        "fbc fb.1.1763632000000.AbCd fbp fb.1.1763600000000.1234567890",
        "subcode 2804019, code 190, version v25.0, fbtrace A1b2C3d4",
        "event ids ord-1234567 and 123e4567-e89b-12d3-a456-426614174000",
        "between 10:00:03 and 11:30, semver 1.2.3",
        '{"browser": [1200, 1300, 1400], "server": [0, 0, 0], "emq": 6.4}',
        "Purchase fell from 1,200/h to 0/h at 14:00 UTC on pixel 9876543210",
    ],
)
def test_domain_values_pass_untouched(text):
    assert scrub(text) == text
    assert_prompt_safe(text)


def test_everything_in_one_text_is_masked_and_counted():
    text = "a@b.io and c@d.io called 650-555-1212 from 10.0.0.1 and ::1 at 2026-11-20T10:00:03Z"
    clean, report = scrub_with_report(text)
    assert clean == "[email] and [email] called [phone] from [ip] and [ip] at 2026-11-20T10:00:03Z"
    assert report.counts == {"email": 2, "phone": 1, "ip": 2} and report.total == 5


@pytest.mark.parametrize("filler", ["x", "1", "1.", "a:", "ab@"])
def test_long_texts_without_pii_scrub_in_linear_time(filler):
    import time

    text = filler * (100_000 // len(filler))
    started = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - started < 1.5  # quadratic back-tracking would take minutes
