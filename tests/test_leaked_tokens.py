"""Leaked-token reports: signed, rate-limited, revoke what is real, tell the owners where, reveal nothing."""

from __future__ import annotations

import json
import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorhub.context import AppContext
from sensorhub.tokens.leaks import signature
from tests.builders import World, bearer, login

SECRET = "scanner-shared-secret-0123456789"


def _post(client: TestClient, body: object, secret: str = SECRET, ts: int | None = None) -> object:
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    return client.post(
        "/api/tokens/leaked",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Sensorhub-Timestamp": stamp,
            "X-Sensorhub-Signature": signature(secret, stamp, raw),
        },
    )


def _app(ctx: AppContext, **settings: object) -> TestClient:
    from sensorhub.app import create_app

    s = ctx.settings.model_copy(update={"leak_report_secret": SECRET, **settings})
    ctx.settings = s
    ctx.auth.settings = s
    return TestClient(create_app(s, ctx))


def test_a_report_revokes_real_tokens_tells_owners_and_answers_alike(world: World, ctx: AppContext) -> None:
    client = _app(ctx)
    world.org("acme")
    world.user("ana@acme.test", "acme", "member")
    world.user("olga@acme.test", "acme", "owner")
    pat = world.pat("ana@acme.test", ["entities"], name="notebook")
    key = world.api_key("acme", ["entities"], name="ingest")
    fake = pat[:-8] + "AAAAAAAA"  # well-formed, wrong checksum
    page = f"const TOKEN = '{pat}';\nheaders = {{'x-api-key': '{key}'}}"

    r = _post(client, {"tokens": [page, fake, "hello"], "source": "https://gist.example/abc"})
    assert r.status_code == 202, r.text  # type: ignore[attr-defined]
    assert r.json() == {"status": "accepted", "received": 3}  # type: ignore[attr-defined]
    assert client.get("/api/tokens/self", headers=bearer(pat)).status_code == 401
    assert client.get("/api/tokens/self", headers={"x-api-key": key}).status_code == 401

    # Only junk (or only unknown strings): the very same answer.
    r = _post(client, {"tokens": [fake], "source": "x"})
    assert r.status_code == 202 and r.json() == {"status": "accepted", "received": 1}  # type: ignore[attr-defined]
    r = _post(client, {"tokens": [pat], "source": "again"})  # already revoked: same answer
    assert r.status_code == 202 and r.json() == {"status": "accepted", "received": 1}  # type: ignore[attr-defined]

    login(client, "ana@acme.test")
    (n,) = client.get("/api/notifications").json()["items"]
    assert "found in public and has been revoked" in n["subject"]
    assert "https://gist.example/abc" in n["body"]
    login(client, "olga@acme.test")
    subjects = [n["subject"] for n in client.get("/api/notifications").json()["items"]]
    assert subjects == ["sensorhub: the API key “ingest” of Acme was found in public and has been revoked"]
    events = client.get("/api/orgs/acme/audit-events").json()
    assert any(
        e["action"] == "token.leaked" and e["details"]["source"] == "https://gist.example/abc" for e in events
    )


def test_unsigned_stale_or_junk_reports_are_refused_and_change_nothing(world: World, ctx: AppContext) -> None:
    client = _app(ctx)
    world.org("acme")
    world.user("ana@acme.test", "acme", "member")
    pat = world.pat("ana@acme.test", ["entities"])
    body = {"tokens": [pat]}
    assert _post(client, body, secret="wrong").status_code == 401  # type: ignore[attr-defined]
    assert _post(client, body, ts=int(time.time()) - 3600).status_code == 401  # type: ignore[attr-defined]
    r = client.post("/api/tokens/leaked", json=body)
    assert r.status_code == 401 and "X-Sensorhub-Signature" in r.json()["message"]
    for junk, word in (({"tokens": []}, "1 to 100"), ({"tokens": ["x"] * 101}, "1 to 100"),
                       ({"tokens": "abc"}, "tokens"), ({"tokens": [pat], "where": "x"}, "where")):  # fmt: skip
        r = _post(client, junk)
        assert r.status_code in (400, 422) and word in r.text, (junk, r.text)  # type: ignore[attr-defined]
    assert client.get("/api/tokens/self", headers=bearer(pat)).status_code == 200


def test_reports_are_rate_limited_and_off_without_a_secret(
    world: World, ctx: AppContext, app: FastAPI
) -> None:
    off = TestClient(app)
    r = off.post("/api/tokens/leaked", json={"tokens": ["x"]})
    assert r.status_code == 403 and "not enabled" in r.json()["message"]
    client = _app(ctx, leak_reports_per_minute=3)  # every report counts, the refused one above too
    assert _post(client, {"tokens": ["x"]}).status_code == 202  # type: ignore[attr-defined]
    assert _post(client, {"tokens": ["x"]}).status_code == 202  # type: ignore[attr-defined]
    r = _post(client, {"tokens": ["x"]})
    assert r.status_code == 429 and "retry-after" in r.headers  # type: ignore[attr-defined]
