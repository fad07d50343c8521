"""Incident alerts and summaries by email, over a real SMTP conversation with a local aiosmtpd server
(AUTH LOGIN/PLAIN with a password): multipart text + HTML, the chart inline by Content-ID, the outbox's
retries and exactly-once, and no customer information, token or SMTP password in a message or a log."""

from __future__ import annotations

import email
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from agent.email.deliver import deliver_email_outbox
from agent.email.smtp import EmailNotConfigured, Mailer, mailer_from_settings, parse_smtp_url
from tests.agentworld import WorldTemplate, agent_services, agent_world
from tests.e2e.test_serve_world import CANARY_EMAIL
from tests.fixtures.db import event_line
from tools.ledger.outbox import OutboxMessage
from tools.ledger.pixels import PixelConfig, sync_pixels

SMTP_USER = "capi-mailer"
SMTP_PASSWORD = "smtp-canary-password-5d1e"
CANARY_PHONE = "+1 650 555 0199"
FROM = "capi-agent <alerts@shop.example>"
OPS = "ops@shop.example"


@dataclass
class Mailbox:
    """What the SMTP server accepted, and what it should answer to the next DATA commands."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # e.g. "451 4.3.0 try later", consumed first
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answers:
            return self.answers.pop(0)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content,  # type: ignore[arg-type]
                                                      policy=default_policy))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER
              and auth_data.password.decode() == SMTP_PASSWORD)
        if ok:
            self.logins.append(mechanism)
        # handled=False: the server answers 535 itself (with the default, a failed login got no answer
        # at all and the client timed out, as no real server does).
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def canary_lines(world_at, pixel_id: str) -> list[dict[str, Any]]:
    at = world_at - timedelta(days=1)
    return [event_line(event_time=at, name="Purchase", event_id="canary-mail-1", pixel_id=pixel_id,
                       user_data={"em": [CANARY_EMAIL], "ph": [CANARY_PHONE], "client_ip_address": "203.0.113.9",
                                  "client_user_agent": "Mozilla/5.0"},
                       custom_data={"currency": "USD", "value": 20.0})]


def mailer(port: int) -> Mailer:
    found = mailer_from_settings(SecretStr(f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{port}"), FROM)
    assert found is not None
    return found


def parts(message: EmailMessage) -> dict[str, Any]:
    """The text part, the HTML part and the inline images (by Content-ID) of a message."""
    found: dict[str, Any] = {"images": {}}
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "text/plain":
            found["text"] = part.get_content()
        elif kind == "text/html":
            found["html"] = part.get_content()
        elif kind == "image/png":
            found["images"][str(part["Content-ID"]).strip("<>")] = (part.get_content(), part.get_content_disposition())
    return found


# --- the SMTP URL ---------------------------------------------------------------------------------

def test_smtp_urls_select_security_and_keep_the_password_secret() -> None:
    plain = parse_smtp_url("smtp://mail.example:2525")
    assert (plain.host, plain.port, plain.security, plain.username, plain.password) == (
        "mail.example", 2525, "plain", None, None)
    starttls = parse_smtp_url("smtp+starttls://u%40x:p%3Ass@mail.example")
    assert (starttls.port, starttls.security, starttls.username) == (587, "starttls", "u@x")
    assert starttls.password is not None and starttls.password.get_secret_value() == "p:ss"
    assert "p:ss" not in repr(starttls) and "p%3Ass" not in repr(starttls)
    assert parse_smtp_url("smtps://mail.example").port == 465
    with pytest.raises(EmailNotConfigured) as bad:
        parse_smtp_url(f"http://u:{SMTP_PASSWORD}@mail.example")
    assert SMTP_PASSWORD not in str(bad.value)
    with pytest.raises(EmailNotConfigured, match="CAPI_EMAIL_FROM"):
        mailer_from_settings(SecretStr("smtp://mail.example"), None)
    assert mailer_from_settings(None, FROM) is None


def test_an_email_address_in_pixels_toml_is_checked() -> None:
    assert PixelConfig(id="1", email_to="a@b.example").email_to == ["a@b.example"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="email_to"):
        PixelConfig(id="1", email_to=["not an address"])
    assert PixelConfig(id="1").email_summaries == "daily" and PixelConfig(id="1").summaries == "hourly"


# --- end to end -----------------------------------------------------------------------------------

def test_incident_and_summary_emails_go_out_once_as_multipart_with_the_chart_inline(
        template: WorldTemplate, tmp_path: Path, mailbox: tuple[Mailbox, int],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    box, port = mailbox
    scenario = template.scenario
    with agent_world(template, tmp_path, extra_events=canary_lines(scenario.audit_at, scenario.pixel_id)) as world:
        pixel = world.pixel.model_copy(update={"email_to": [OPS], "email_summaries": "hourly"})
        with agent_services(world) as services:
            with services.wiring.session() as session:
                sync_pixels(session, [pixel])
                session.commit()
            services.audit_pixel(pixel, scenario.audit_at)
            services.audit_pixel(pixel, scenario.audit_at)  # the same hour again: nothing new to send
            report = deliver_email_outbox(services.wiring.session, mailer(port), now=scenario.audit_at)
            assert (report.sent, report.retry_later, report.failed) == (len(box.messages), 0, 0)
            assert deliver_email_outbox(services.wiring.session, mailer(port), now=scenario.audit_at).sent == 0
            with services.wiring.session() as session:
                rows = list(session.query(OutboxMessage).order_by(OutboxMessage.id))

    assert {r.kind for r in rows} == {"email_incident", "email_summary"} and {r.status for r in rows} == {"sent"}
    assert all(envelope == ("alerts@shop.example", [OPS]) for envelope in box.envelopes)
    assert box.logins  # the password was used, over AUTH
    subjects = [str(m["Subject"]) for m in box.messages]
    incident = next(m for m in box.messages if "Missed" in str(m["Subject"]) or "New incident" in str(m["Subject"]))
    summary = next(m for m in box.messages if "Hourly summary" in str(m["Subject"]))
    assert len(subjects) == len(set(subjects)) == len(rows)

    found = parts(incident)
    assert incident.get_content_type() == "multipart/alternative"
    [(cid, (png, disposition))] = found["images"].items()
    assert png.startswith(b"\x89PNG") and disposition == "inline" and f"cid:{cid}" in found["html"]
    assert "Proposed fix fix_" in found["text"] and "this email cannot approve anything" in found["text"]
    # It informs and links; nothing in it can approve (no form, no link that decides).
    assert "<form" not in found["html"] and not re.search(r'href="[^"]*(approve|reject|decide)', found["html"])

    found = parts(summary)
    assert found["text"].startswith("capi-agent hourly summary, 2026-11-12 18:00 → 19:00 UTC")
    assert "[critical] 1100000005" in found["text"] and "waiting for approval: replay fix_" in found["text"]
    assert "<table>" in found["html"] and "critical" in found["html"]
    [(cid, (png, disposition))] = found["images"].items()  # the pixels' chart, inline
    assert png.startswith(b"\x89PNG") and disposition == "inline" and f"cid:{cid}" in found["html"]

    everything = "\n".join(m.as_string() for m in box.messages) + caplog.text
    for secret in (CANARY_EMAIL, CANARY_PHONE, "6505550199", SMTP_PASSWORD, "sim-token"):
        assert secret not in everything


def test_a_mail_server_failure_keeps_the_email_pending_until_it_is_accepted_once(
        template: WorldTemplate, tmp_path: Path, mailbox: tuple[Mailbox, int],
        caplog: pytest.LogCaptureFixture) -> None:
    box, port = mailbox
    scenario = template.scenario
    with agent_world(template, tmp_path) as world:
        # Default email_summaries = "daily": an incident alert, no hourly summary.
        pixel = world.pixel.model_copy(update={"email_to": [OPS]})
        with agent_services(world) as services:
            with services.wiring.session() as session:
                sync_pixels(session, [pixel])
                session.commit()
            services.audit_pixel(pixel, scenario.audit_at)
            box.answers = ["451 4.3.0 try again later"]
            first = deliver_email_outbox(services.wiring.session, mailer(port), now=scenario.audit_at)
            assert (first.sent, first.retry_later, first.failed) == (0, 1, 0)
            later = deliver_email_outbox(services.wiring.session, mailer(port),
                                         now=scenario.audit_at + timedelta(minutes=5))
            assert later.sent == 1
            assert deliver_email_outbox(services.wiring.session, mailer(port), now=scenario.audit_at).sent == 0
            with services.wiring.session() as session:
                [row] = session.query(OutboxMessage).all()
            assert (row.kind, row.status, row.attempts) == ("email_incident", "sent", 1)
            assert len(box.messages) == 1

            # A wrong password is not worth retrying: the row is marked failed, the password unlogged.
            services.audit_pixel(pixel, scenario.audit_at + timedelta(hours=1))
            with services.wiring.session() as session:
                queued = session.query(OutboxMessage).filter(OutboxMessage.status == "pending").count()
            wrong = Mailer(parse_smtp_url(f"smtp://{SMTP_USER}:wrong-{SMTP_PASSWORD}@127.0.0.1:{port}"), sender=FROM)
            report = deliver_email_outbox(services.wiring.session, wrong, now=scenario.audit_at)
            assert report.failed == queued
    assert SMTP_PASSWORD not in caplog.text


def test_the_daily_email_digest_goes_out_at_the_digest_hour(template: WorldTemplate, tmp_path: Path,
                                                            mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    scenario = template.scenario
    with agent_world(template, tmp_path) as world:
        pixel = world.pixel.model_copy(update={"email_to": [OPS]})
        with agent_services(world) as services:
            with services.wiring.session() as session:
                sync_pixels(session, [pixel])
                session.commit()
            at = scenario.audit_at.replace(hour=9, minute=0)  # 09:00 London = UTC in November
            world.simulator.state.set_now(at)
            services.audit_pixel(pixel, at)
            deliver_email_outbox(services.wiring.session, mailer(port), now=at)
    digests = [m for m in box.messages if "Daily digest" in str(m["Subject"])]
    assert len(digests) == 1
    assert parts(digests[0])["text"].startswith(
        "capi-agent daily digest, 2026-11-11 09:00 → 2026-11-12 09:00 UTC")
