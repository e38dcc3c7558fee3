"""sensorhub.mail against a real SMTP server in the test process (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sensorhub.config import Settings
from sensorhub.mail import MailError, SmtpConfig, send_mail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"robot" and data.password == b"s3cret"
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    c = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_auth,
        auth_require_tls=False,
        auth_required=False,
    )
    c.start()
    try:
        yield inbox, port
    finally:
        c.stop()


def test_send_plain_with_login_and_refusals(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    cfg = SmtpConfig(
        "127.0.0.1", port, security="none", user="robot", password="s3cret", sender="hub@example.test"
    )
    mid = send_mail(cfg, ["ops@example.test"], "Token expires", "Your token expires tomorrow.")
    (env,) = inbox.messages
    assert env.mail_from == "hub@example.test" and env.rcpt_tos == ["ops@example.test"]
    body = env.content.decode()
    assert "Subject: Token expires" in body and "Your token expires tomorrow." in body and mid in body
    with pytest.raises(MailError, match="cannot reach"):
        send_mail(SmtpConfig("127.0.0.1", 1, security="none"), ["a@b.c"], "s", "t")


def test_config_from_settings() -> None:
    assert SmtpConfig.from_settings(Settings()) is None
    cfg = SmtpConfig.from_settings(
        Settings(smtp_host="mail.example.test", smtp_security="tls", smtp_port=465)
    )
    assert cfg is not None and (cfg.host, cfg.port, cfg.security) == ("mail.example.test", 465, "tls")
