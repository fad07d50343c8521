"""Sending one message over SMTP, configured by ``CAPI_SMTP_URL``.

``smtp://user:pass@host:25`` (plain, or STARTTLS only if asked), ``smtp+starttls://...:587``,
``smtps://...:465`` (TLS from the start). The password lives in a ``SecretStr`` and never reaches a log
or an error message: failures are reported by their SMTP code or exception type only.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

Security = Literal["plain", "starttls", "tls"]
SCHEMES: dict[str, tuple[Security, int]] = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587),
                                            "smtps": ("tls", 465)}


class EmailNotConfigured(ValueError):
    """CAPI_SMTP_URL or CAPI_EMAIL_FROM is missing or malformed (the message never holds the URL)."""


class EmailDeliveryError(Exception):
    """One send failed. ``error`` is an SMTP code or an exception type, never a password."""

    def __init__(self, error: str, *, retryable: bool) -> None:
        super().__init__(f"email not sent: {error}")
        self.error = error
        self.retryable = retryable


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpTarget:
    """The server, port, security and credentials of an ``smtp[s|+starttls]://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise EmailNotConfigured("CAPI_SMTP_URL must look like smtp://host:port, smtps://... or "
                                 "smtp+starttls://... (user:password@ optional)")
    security, default_port = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise EmailNotConfigured("CAPI_SMTP_URL has an invalid port") from None
    password = SecretStr(unquote(parts.password)) if parts.password is not None else None
    return SmtpTarget(host=parts.hostname, port=port, security=security,
                      username=unquote(parts.username) if parts.username else None, password=password)


class Mailer:
    """Sends messages from ``sender`` through one SMTP server (a connection per send: summaries go
    out a few times an hour, a pooled connection would mostly sit idle and time out)."""

    def __init__(self, target: SmtpTarget, *, sender: str, timeout: float = 20.0) -> None:
        self.target = target
        self.sender = sender
        self.timeout = timeout

    def send(self, message: EmailMessage) -> str:
        """Sends ``message`` (its From is set here); returns its Message-ID."""
        del message["From"]
        message["From"] = self.sender
        target = self.target
        try:
            if target.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout,
                                                        context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
            with client:
                if target.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if target.username and target.password is not None:
                    client.login(target.username, target.password.get_secret_value())
                refused = client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            # 4xx: the server asks to come back later; 5xx: it will not take this message.
            raise EmailDeliveryError(f"smtp_{exc.smtp_code}", retryable=400 <= exc.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused:
            raise EmailDeliveryError("recipients_refused", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailDeliveryError(type(exc).__name__, retryable=True) from None
        if refused:
            raise EmailDeliveryError("recipients_refused", retryable=False)
        return str(message["Message-ID"])


def mailer_from_settings(smtp_url: SecretStr | None, email_from: str | None) -> Mailer | None:
    """A Mailer when CAPI_SMTP_URL is set (then CAPI_EMAIL_FROM is required); None otherwise."""
    if smtp_url is None:
        return None
    if not email_from:
        raise EmailNotConfigured("CAPI_EMAIL_FROM is not set (needed with CAPI_SMTP_URL)")
    return Mailer(parse_smtp_url(smtp_url.get_secret_value()), sender=email_from)
