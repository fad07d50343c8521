"""Keep access tokens out of logs.

The Graph client sends its token in the ``Authorization`` header, so URLs it logs carry none. This is
the second line of defence: ``redact`` masks ``access_token=...``, ``appsecret_proof=...`` (query or
JSON style), ``Authorization: Bearer/OAuth ...`` and any secret registered with ``register_secret``;
``install_log_redaction`` applies it to every log record created in the process (also to formatted
tracebacks), whatever logger or handler is involved, including ones added later (pytest's caplog).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
# Shorter strings are not registered: masking them would shred ordinary words in log lines.
MIN_SECRET_LENGTH = 6

_PARAM = re.compile(
    r"""(?P<key>(?:access_token|appsecret_proof|client_secret|fb_exchange_token)"""
    r"""(?:["']?\s*[:=]\s*["']?|%3D))(?P<value>[^&\s"',;}\]]+)""",
    re.IGNORECASE,
)
# "Bearer x" is always a credential; "OAuth" also appears in Meta's own messages ("Invalid OAuth
# access token"), so after it only a token-sized value counts.
_AUTH_HEADER = re.compile(
    r"(?P<key>\b(?:Bearer\s+(?=[A-Za-z0-9._~+/=\-]{4,})|OAuth\s+(?=[A-Za-z0-9._~+/=\-]{20,})))"
    r"(?P<value>[A-Za-z0-9._~+/=\-]+)", re.IGNORECASE)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_install_lock = threading.Lock()
_MARK = "_capi_redacting_factory"


def register_secret(secret: str | None) -> None:
    """Mask this exact value wherever it appears in a redacted text (e.g. the configured access token)."""
    if secret and len(secret) >= MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """Return ``text`` with tokens, proofs, bearer credentials and registered secrets masked."""
    if not text:
        return text
    text = _PARAM.sub(lambda m: m.group("key") + MASK, text)
    text = _AUTH_HEADER.sub(lambda m: m.group("key") + MASK, text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a log record in place and return it.

    String arguments are masked one by one so that formatters relying on ``args`` keep working; if
    the formatted message still leaks (e.g. an ``httpx.URL`` argument), the record is collapsed to its
    redacted message with no arguments.
    """
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if record.args:
        record.args = _redact_args(record.args)
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is logging's problem, not ours; stay out of its way
        message = None
    if message is not None:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _redact_args(args: Any) -> Any:
    if isinstance(args, dict):
        return {key: redact(value) if isinstance(value, str) else value for key, value in args.items()}
    if isinstance(args, tuple):
        return tuple(redact(value) if isinstance(value, str) else value for value in args)
    return args


def install_log_redaction() -> None:
    """Make every log record in this process pass through ``redact_record`` (idempotent)."""
    with _install_lock:
        current = logging.getLogRecordFactory()
        if getattr(current, _MARK, False):
            return

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(current(*args, **kwargs))

        setattr(redacting_factory, _MARK, True)
        logging.setLogRecordFactory(redacting_factory)
