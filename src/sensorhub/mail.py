"""Outgoing e-mail over SMTP (stdlib ``smtplib``), for any part of sensorhub that sends mail.

Settings (``SENSORHUB_SMTP_*``): ``host`` (unset = mail is not configured), ``port`` (587),
``security`` (``starttls`` — upgrade a plain connection, the default; ``tls`` — TLS from the first byte,
usually port 465; ``none`` — plain, for a local relay or tests), ``user``/``password`` (login when set),
``sender`` (the From address) and ``timeout_seconds``.

:func:`send_mail` blocks (call it from a worker thread, or ``await asyncio.to_thread(send_mail, …)``);
it raises :class:`MailError` with a message fit for a delivery log (never the password).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sensorhub.config import Settings

__all__ = ["MailError", "SmtpConfig", "send_mail"]


class MailError(RuntimeError):
    """A message could not be handed to the SMTP server (the text names why, without secrets)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    user: str | None = None
    password: str | None = None
    sender: str = "sensorhub@localhost"
    timeout_seconds: float = 10.0
    # Verify the server's certificate (tests against a self-signed server pass a context of their own).
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """The server configured by ``SENSORHUB_SMTP_*``; None when ``SENSORHUB_SMTP_HOST`` is unset."""
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password,
            sender=settings.smtp_sender,
            timeout_seconds=settings.smtp_timeout_seconds,
        )


def build_message(
    sender: str, to: list[str], subject: str, text: str, headers: dict[str, str] | None = None
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(text)
    return msg


def send_mail(
    config: SmtpConfig,
    to: list[str],
    subject: str,
    text: str,
    *,
    headers: dict[str, str] | None = None,
) -> str:
    """Send a plain-text message to ``to``; returns its Message-ID. Raises :class:`MailError`."""
    if not to:
        raise MailError("no recipient")
    msg = build_message(config.sender, to, subject, text, headers)
    context = config.ssl_context or ssl.create_default_context()
    try:
        smtp: smtplib.SMTP
        if config.security == "tls":
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds)
        with smtp:
            if config.security == "starttls":
                smtp.starttls(context=context)
            if config.user:
                smtp.login(config.user, config.password or "")
            refused = smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:
        raise MailError(f"SMTP server answered {e.smtp_code}: {_text(e.smtp_error)}") from None
    except smtplib.SMTPException as e:
        raise MailError(f"SMTP error: {type(e).__name__}: {_text(str(e))}") from None
    except (OSError, ssl.SSLError) as e:
        raise MailError(f"cannot reach SMTP server {config.host}:{config.port}: {e}") from None
    if refused:
        raise MailError(f"recipients refused: {', '.join(sorted(refused))}")
    return str(msg["Message-ID"])


def _text(v: bytes | str) -> str:
    return (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)[:300]
