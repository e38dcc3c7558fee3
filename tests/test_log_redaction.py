"""No token, from a header, the query string or a body, ever reaches a log."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from sensorhub.app import create_app
from sensorhub.config import Settings
from sensorhub.context import AppContext
from sensorhub.logs import redact
from tests.builders import World, login


def test_requests_at_debug_level_leave_no_secret_in_logs(
    settings: Settings, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    s2 = settings.model_copy(update={"allow_query_token": True})
    app = create_app(s2, AppContext.build(s2))
    world.org("acme")
    world.user("a@example.com", "acme", "owner")
    pat = world.pat("a@example.com", ["timeseries"])
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as c:
        c.get("/api/tokens/self", headers={"Authorization": f"Bearer {pat}"})
        c.get(f"/api/tokens/self?token={pat}")
        c.get("/api/tokens/self", headers={"x-api-key": pat})
        c.get("/api/tokens/self", headers={"Authorization": f"Bearer {pat[:-1]}X"})
        csrf = login(c, "a@example.com")
        created = c.post("/api/tokens", json={"name": "n", "scopes": ["entities"]}).json()["token"]
        c.post(f"/api/tokens/{'x' * 8}/rotate")
        # Also what third-party code might log, and uvicorn's access-log format.
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", f"/api/data/recent?token={pat}&limit=5", "1.1", 200
        )
        logging.getLogger("x").debug("headers: %s", {"authorization": f"Bearer {created}"})
        logging.getLogger("x").debug(f"body: {{'token': '{created}'}}")
        try:
            raise ValueError(f"bad token {created}")
        except ValueError:
            logging.getLogger("x").exception("failed")
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert caplog.records, "expected some log output at DEBUG"
    for secret in (pat, created, pat[9:30], created[9:30], csrf, "correct-horse-battery"):
        assert secret not in text


def test_redact_keeps_the_useful_rest() -> None:
    line = redact("GET /api/data/recent?token=shub_pat_abc123&limit=20 HTTP/1.1")
    assert "shub_pat_abc123" not in line and "limit=20" in line


def test_an_openid_connect_callback_leaves_no_authorization_code_in_logs() -> None:
    line = redact(
        '127.0.0.1 - "GET /login/oidc/callback?code=Sp1ffXyZ0123456789&state=abc&iss=https%3A%2F%2Fidp HTTP/1.1" 302'
    )
    assert "Sp1ffXyZ0123456789" not in line and "state=abc" in line
    body = redact(
        "grant_type=authorization_code&code=Q7w8e9r0t1&code_verifier=V3r1f13rV4lu3&client_secret=s3cr3tS3cr3t"
    )
    assert "Q7w8e9r0t1" not in body and "V3r1f13rV4lu3" not in body and "s3cr3tS3cr3t" not in body
    assert "grant_type=authorization_code" in body


def test_query_tokens_are_redacted_as_the_server_decodes_them(
    settings: Settings, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Percent-encoded keys (``%74oken``), escapes inside the token (``%5F``) and repeated ``token=``
    parameters: what the server reads from the query string is what the logs hide."""
    from starlette.types import Receive, Scope, Send
    from uvicorn.protocols.utils import get_path_with_query_string

    s2 = settings.model_copy(update={"allow_query_token": True})
    app = create_app(s2, AppContext.build(s2))
    access = logging.getLogger("uvicorn.access")

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        # What uvicorn's access log writes for each request (its own helper, its own format).
        if scope["type"] == "http":
            access.info(
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:5000",
                scope.get("method"),
                get_path_with_query_string(scope),
                "1.1",
                200,
            )  # type: ignore[arg-type]
        await app(scope, receive, send)

    world.org("acme")
    world.user("a@example.com", "acme", "owner")
    pat = world.pat("a@example.com", ["timeseries"])
    escaped = pat.replace("_", "%5F")
    caplog.set_level(logging.DEBUG)
    with TestClient(logged) as c:  # type: ignore[arg-type]
        assert c.get(f"/api/tokens/self?%74oken={pat}").status_code == 200
        assert c.get(f"/api/tokens/self?token={escaped}").status_code == 200
        assert c.get(f"/api/tokens/self?%74%6F%6B%65%6E={escaped}").status_code == 200
        # Two token parameters are ambiguous: refused, and neither value is logged.
        r = c.get(f"/api/tokens/self?token=first-guess-123&%74oken={pat}")
        assert r.status_code == 401 and "once" in r.json()["message"]
        # A value that is not token-shaped, under an encoded key, is still hidden.
        c.get("/api/tokens/self?%74oken=hunter2-not-a-token")
    logging.getLogger("x").debug("download failed for /exports/%s", f"file?sig=1&{'%74oken'}={escaped}")
    logging.getLogger("x").debug("path %s", f"/odd/{escaped}/x")
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "%74oken=" in text, "expected the access-log lines in the capture"
    for secret in (pat, escaped, pat[9:30], "first-guess-123", "hunter2-not-a-token"):
        assert secret not in text, secret


def test_redact_finds_tokens_whatever_the_key_or_encoding() -> None:
    t = "shub_pat_" + "A" * 49
    assert redact(f"/x?q={t}") == "/x?q=[REDACTED]"
    assert redact(f"/x?data=%7B%22k%22%3A%22{t.replace('_', '%5F')}%22%7D&limit=5").endswith("&limit=5")
    assert t[9:] not in redact(f"/x?data=%7B%22k%22%3A%22{t.replace('_', '%5F')}%22%7D&limit=5")
    assert redact(f"see x_{t} done") == "see x_[REDACTED-TOKEN] done"
    assert (
        redact("GET /api/data?limit=5&from=2026-01-01 HTTP/1.1")
        == "GET /api/data?limit=5&from=2026-01-01 HTTP/1.1"
    )


def test_the_quick_check_never_skips_a_text_the_patterns_would_change() -> None:
    """``redact`` skips the patterns for texts without any hint of a secret; for every text it answers
    exactly what running all patterns answers."""
    from sensorhub import logs

    logs.install_redaction("shub")
    token = "shub_pat_" + "A" * 30
    corpus = [
        "127.0.0.1:5555",
        "GET",
        "/api/managements",
        "/api/timeseries/v2/entities/urn:x/data?start=2026-01-01&resolution=200",
        '%s - "%s %s HTTP/%s" %d',
        f"/x?%74oken={token}",
        f"/x/{token}",
        "shub%5Fpat%5F" + "B" * 30,
        "Authorization: Bearer abcdefgh12345678",
        "AUTHORIZATION=xyz",
        "X-API-KEY: k",
        "ApiKey: v",
        'password": "hunter2"',
        "Cookie: shub_session=abc",
        "bearer ABCDEFGHIJKLMN",
        "TOKEN abcdefghijk",
        "csrf_token=1",
        "plain text with 100% and %s",
        "/api/tokens/self",
        "/api/tokens/abc/rotate",
        "token :abcdef",
        'Token"  : "abcdef"',
        "x-csrf-token, abc",
        "Bearer\tabcdefghijkl",
        "token\nabcdefghijk",
        "COOKIE ,x",
        "apikey:abc",
        "api-key : abc",
        "Password'=x",
    ]
    for text in corpus:
        assert logs.redact(text) == logs._redact_all(text), text
    assert logs.redact("/api/managements") == "/api/managements"
    assert logs._hint.search("/api/tokens/self") is None  # a plain path: no pattern is run
    assert token not in logs.redact(f"/x/{token}")


def test_the_quick_check_agrees_with_the_patterns_on_random_texts() -> None:
    """Texts made of the keywords, separators and token shapes the patterns look for, in random orders:
    ``redact`` answers what running all patterns answers (fixed seed, so reproducible)."""
    import random

    from sensorhub import logs

    logs.install_redaction("shub")
    pieces = [
        "token", "Token", "TOKEN", "tokens", "bearer", "Authorization", "cookie", "api_key", "apikey",
        "api-key", "password", "x-csrf-token", "x-api-key", ":", ",", "=", "'", '"', " ", "\t", "\n", "s",
        "abcdefgh1234", "/api/tokens/", "/self", "%41", "%", "shub_pat_AAAA", "shub", "-", "?", "&",
    ]  # fmt: skip
    rng = random.Random(17)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        assert logs.redact(text) == logs._redact_all(text), repr(text)
