"""The auth pipeline: how tokens are presented, checked, cached, limited and cut off."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from sensorhub.app import create_app
from sensorhub.auth import token_format
from sensorhub.auth.dependencies import RequireScope
from sensorhub.auth.principal import Principal
from sensorhub.config import Settings
from sensorhub.context import AppContext
from tests.builders import PASSWORD, World, bearer, login
from tests.conftest import TEST_SECRET_KEY

probe = APIRouter()


@probe.get("/probe/timeseries")
async def probe_timeseries(p: Principal = Depends(RequireScope("timeseries"))) -> dict[str, Any]:
    return {"orgs": sorted(o.slug for o in p.orgs.values() if "timeseries" in p.org_scopes.get(o.id, ()))}


@probe.post("/probe/ingest")
async def probe_ingest(p: Principal = Depends(RequireScope("ingest"))) -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture
def papp(app: FastAPI) -> FastAPI:
    app.include_router(probe)
    return app


@pytest.fixture
def api(papp: FastAPI) -> TestClient:
    return TestClient(papp)


def test_bearer_token_and_x_api_key_headers(api: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    key = world.api_key("acme", ["timeseries"])
    assert api.get("/probe/timeseries", headers={"Authorization": f"Bearer {pat}"}).status_code == 200
    assert api.get("/probe/timeseries", headers={"Authorization": f"Token {pat}"}).status_code == 200
    assert api.get("/probe/timeseries", headers={"Authorization": f"bearer {pat}"}).status_code == 200
    assert api.get("/probe/timeseries", headers={"x-api-key": key}).status_code == 200
    assert api.get("/probe/timeseries", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_missing_and_malformed_credentials(api: TestClient) -> None:
    r = api.get("/probe/timeseries")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in r.json()["message"]
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "shub_pat_x"):
        r = api.get("/probe/timeseries", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_query_token_is_refused_with_advice_when_disabled(api: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    r = api.get(f"/probe/timeseries?token={pat}")
    assert r.status_code == 401
    assert "Authorization" in r.json()["message"] and "SENSORHUB_ALLOW_QUERY_TOKEN" in r.json()["message"]
    assert pat not in r.text


def test_query_token_works_when_enabled(settings: Settings, world: World) -> None:
    s2 = settings.model_copy(update={"allow_query_token": True})
    app = create_app(s2, AppContext.build(s2))
    app.include_router(probe)
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    with TestClient(app) as c:
        assert c.get(f"/probe/timeseries?token={pat}").status_code == 200


def test_bad_checksum_is_rejected_without_touching_the_database(
    api: TestClient, world: World, ctx: AppContext
) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    typo = pat[:-7] + ("A" if pat[-7] != "A" else "B") + pat[-6:]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *a: Any) -> None:
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        r = api.get("/probe/timeseries", headers=bearer(typo))
        r2 = api.get("/probe/timeseries", headers=bearer("shub_pat_" + "x" * 49))
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    assert r.status_code == 401 and r2.status_code == 401
    assert r.json()["message"] == r2.json()["message"] == "Invalid, expired or revoked credentials"
    assert statements == []


def test_insufficient_scope_names_the_scope(api: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["entities"])
    r = api.get("/probe/timeseries", headers=bearer(pat))
    assert r.status_code == 403
    assert "'timeseries'" in r.json()["message"]
    assert r.json()["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_expiry_is_checked_on_every_request_even_when_cached(
    api: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    assert api.get("/probe/timeseries", headers=bearer(pat)).status_code == 200  # now cached
    future = datetime.now(UTC) + timedelta(days=366)
    monkeypatch.setattr("sensorhub.auth.pipeline.utcnow", lambda: future)
    assert api.get("/probe/timeseries", headers=bearer(pat)).status_code == 401


def test_demoting_removing_or_disabling_the_owner_cuts_tokens_off_at_once(
    api: TestClient, client: TestClient, world: World
) -> None:
    world.org("acme")
    world.org("beta")
    world.user("boss@example.com", "acme", "owner")
    world.user("boss@example.com", "beta", "owner")
    world.user("m@example.com", "acme", "member")
    world.user("m@example.com", "beta", "member")
    pat = world.pat("m@example.com", ["timeseries", "ingest"])
    assert api.post("/probe/ingest", headers=bearer(pat)).status_code == 200
    assert api.get("/probe/timeseries", headers=bearer(pat)).json()["orgs"] == ["acme", "beta"]
    login(client, "boss@example.com")

    # Demote to viewer in both organisations: ingest goes at once, reads stay.
    for org in ("acme", "beta"):
        assert (
            client.patch(f"/api/orgs/{org}/members/m@example.com", json={"role": "viewer"}).status_code == 200
        )
    r = api.post("/probe/ingest", headers=bearer(pat))
    assert r.status_code == 403 and "'ingest'" in r.json()["message"]

    # Remove from one organisation: that organisation disappears from the token at once.
    assert client.delete("/api/orgs/beta/members/m@example.com").status_code == 204
    assert api.get("/probe/timeseries", headers=bearer(pat)).json()["orgs"] == ["acme"]

    # Disable the user: every token is refused.
    from sensorhub.accounts import service as accounts

    ctx: AppContext = api.app.state.ctx  # type: ignore[attr-defined]
    with ctx.db.transaction() as s:
        u = accounts.get_user_by_email(s, "m@example.com")
        assert u is not None
        accounts.set_user_disabled(s, u, True)
    assert api.get("/probe/timeseries", headers=bearer(pat)).status_code == 401


def test_ip_allowlist(papp: FastAPI, world: World) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"], allowed_ips=["10.1.2.0/24", "2001:db8::/32"])
    inside = TestClient(papp, client=("10.1.2.3", 5000))
    outside = TestClient(papp, client=("10.9.9.9", 5000))
    v6 = TestClient(papp, client=("2001:db8::7", 5000))
    assert inside.get("/probe/timeseries", headers=bearer(pat)).status_code == 200
    assert v6.get("/probe/timeseries", headers=bearer(pat)).status_code == 200
    r = outside.get("/probe/timeseries", headers=bearer(pat))
    assert r.status_code == 403 and "client address" in r.json()["message"]


def test_per_credential_rate_limit(settings: Settings, world: World) -> None:
    s2 = settings.model_copy(update={"rate_limit_per_minute": 3})
    app = create_app(s2, AppContext.build(s2))
    app.include_router(probe)
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    pat = world.pat("a@example.com", ["timeseries"])
    with TestClient(app) as c:
        rs = [c.get("/probe/timeseries", headers=bearer(pat)) for _ in range(4)]
    assert [r.status_code for r in rs] == [200, 200, 200, 429]
    assert rs[0].headers["x-ratelimit-limit"] == "3"
    assert rs[0].headers["x-ratelimit-remaining"] == "2"
    assert int(rs[3].headers["retry-after"]) >= 1
    assert rs[3].headers["x-ratelimit-remaining"] == "0"


@pytest.fixture(params=["memory", "redis"])
def limiter_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings with the in-process or the Redis rate-limit backend."""
    if request.param == "memory":
        return settings.model_copy(update={"redis_url": None})
    url: str = request.getfixturevalue("redis_url")
    return settings.model_copy(
        update={
            "redis_url": url,
            "redis_prefix": f"sensorhub-test-{uuid.uuid4().hex[:10]}:",
            "secret_key": TEST_SECRET_KEY,  # required with Redis (Settings.check_secret_key)
        }
    )


def _used_redis(s: Settings, key_part: str) -> None:
    """On the Redis backend, the counters really live in Redis (not the in-process fallback)."""
    if s.redis_url:
        import redis

        assert redis.Redis.from_url(s.redis_url).keys(f"{s.redis_prefix}rl:{key_part}*"), (
            "Redis limiter unused"
        )


def _probe_app(settings: Settings, world: World, **update: Any) -> tuple[Settings, AppContext, FastAPI]:
    """The app with the probe routes on ``settings`` changed by ``update`` (its settings and context too),
    and member a@example.com of acme."""
    s2 = settings.model_copy(update=update)
    ctx = AppContext.build(s2)
    app = create_app(s2, ctx)
    app.include_router(probe)
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    return s2, ctx, app


def _bus_ready(ctx: AppContext) -> None:
    """With Redis, wait until the bus is healthy: before that the limiter counts in-process, and a test whose
    first request is counted there and the next in Redis would see its count split."""
    deadline = time.monotonic() + 10
    while ctx.bus is not None and not ctx.bus.healthy():
        assert time.monotonic() < deadline, "the Redis bus never became healthy"
        time.sleep(0.01)


def test_garbage_from_an_address_throttles_failures_not_valid_tokens(
    limiter_settings: Settings, world: World
) -> None:
    s2, ctx, app = _probe_app(limiter_settings, world, failed_auth_limit=3)
    pat = world.pat("a@example.com", ["timeseries"])
    revoked = world.pat("a@example.com", ["timeseries"], name="old")
    with ctx.db.transaction() as s:
        from sensorhub.tokens import service as tokens
        from sensorhub.tokens.models import Credential

        cred = s.query(Credential).filter_by(name="old").one()
        tokens.revoke(s, cred, actor_id=None)
    well_formed_unknown = token_format.generate("shub", "pat")
    nat = ("198.51.100.1", 1)
    with TestClient(app, client=nat) as c, TestClient(app, client=("198.51.100.2", 1)) as other:
        _bus_ready(ctx)
        codes = [
            c.get("/probe/timeseries", headers=bearer("shub_pat_" + ch * 49)).status_code for ch in "wxyz"
        ]
        assert codes == [401, 401, 401, 429]
        throttled = c.get("/probe/timeseries", headers=bearer("garbage"))
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        # The address is over its failure limit, yet a valid token from it is served, on its own quota.
        ok = c.get("/probe/timeseries", headers=bearer(pat))
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit"] == str(s2.rate_limit_per_minute)
        # Tokens that fail from the throttled address are still failures: 429, not a free 401.
        assert c.get("/probe/timeseries", headers=bearer(well_formed_unknown)).status_code == 429
        assert c.get("/probe/timeseries", headers=bearer(revoked)).status_code == 429
        # Another address is not throttled by this one's garbage.
        assert other.get("/probe/timeseries", headers=bearer("garbage")).status_code == 401
        assert other.get("/probe/timeseries", headers=bearer(pat)).status_code == 200
    _used_redis(s2, "authfail:")
    ctx.db.dispose()


def test_a_throttled_address_cannot_exceed_a_valid_tokens_own_quota(
    limiter_settings: Settings, world: World
) -> None:
    s2, ctx, app = _probe_app(limiter_settings, world, failed_auth_limit=1, rate_limit_per_minute=2)
    pat = world.pat("a@example.com", ["timeseries"])
    with TestClient(app) as c:
        _bus_ready(ctx)
        assert [c.get("/probe/timeseries", headers=bearer(x)).status_code for x in "xy"] == [401, 429]
        codes = [c.get("/probe/timeseries", headers=bearer(pat)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    _used_redis(s2, "cred:")
    ctx.db.dispose()


def test_one_refused_token_repeated_does_not_lock_out_its_address(
    limiter_settings: Settings, world: World
) -> None:
    """The failed-auth budget counts distinct refused credentials per address: a client whose token was
    revoked (or expired, or rotated) and that keeps calling its routes — more calls than the budget, as a
    client of every token route does — is told 401 each time, and the address keeps its budget for the
    others behind it. Its repeats are limited like a valid token's requests (per minute), then 429."""
    s2, ctx, app = _probe_app(limiter_settings, world, failed_auth_limit=3, rate_limit_per_minute=12)
    revoked = world.pat("a@example.com", ["timeseries"], name="old")
    expiring = world.pat("a@example.com", ["timeseries"], name="expiring")
    with ctx.db.transaction() as s:
        from sensorhub.tokens import service as tokens
        from sensorhub.tokens.models import Credential

        tokens.revoke(s, s.query(Credential).filter_by(name="old").one(), actor_id=None)
        s.query(Credential).filter_by(name="expiring").one().expires_at = datetime.now(UTC) - timedelta(
            seconds=1
        )
    with TestClient(app, client=("198.51.100.7", 1)) as c:
        _bus_ready(ctx)
        # Ten calls each (more than the budget of 3): 401 every time, never 429.
        for token in (revoked, expiring):
            codes = [c.get("/probe/timeseries", headers=bearer(token)).status_code for _ in range(10)]
            assert codes == [401] * 10, codes
        garbage = [c.get("/probe/timeseries", headers=bearer("garbage")).status_code for _ in range(5)]
        assert garbage == [401] * 5
        # Three distinct credentials used the budget of 3; a fourth is over it.
        assert c.get("/probe/timeseries", headers=bearer("other garbage")).status_code == 429
        # The repeats of one refused token have the per-credential quota (12 a minute; 9 used so far:
        # its first refusal was counted against the address instead).
        codes = [c.get("/probe/timeseries", headers=bearer(revoked)).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429], codes
    _used_redis(s2, "authfail-repeat:")
    ctx.db.dispose()


def test_every_transport_counts_refusals_the_same_way(settings: Settings) -> None:
    """``Authenticator.count_failure`` is what HTTP, the embedded MQTT broker and Mosquitto's plugin call
    for a refused credential: a device reconnecting with its one revoked token counts once against its
    address; distinct refused credentials use up the budget, and past it the answer is a 429."""
    ctx = AppContext.build(settings.model_copy(update={"redis_url": None, "failed_auth_limit": 2}))
    auth = ctx.auth
    assert [auth.count_failure("203.0.113.9", "one revoked token") for _ in range(10)] == [None] * 10
    assert auth.count_failure("203.0.113.9", "another") is None
    refused = auth.count_failure("203.0.113.9", "a third")
    assert refused is not None and refused.status == 429
    assert auth.count_failure("203.0.113.10", "a third") is None  # another address has its own budget
    ctx.db.dispose()


def test_a_token_is_one_refused_credential_on_every_transport(settings: Settings) -> None:
    """HTTP counts a refused well-formed token by its digest, MQTT is given the token's text: the same
    token refused over both is one refused credential of its address, and its text is not kept."""
    ctx = AppContext.build(settings.model_copy(update={"redis_url": None, "failed_auth_limit": 1}))
    auth = ctx.auth
    token = token_format.generate(settings.token_prefix, "pat")
    assert auth.count_failure("203.0.113.9", token_format.digest(token)) is None  # HTTP
    assert auth.count_failure("203.0.113.9", token) is None  # MQTT: the same credential again
    refused = auth.count_failure("203.0.113.9", "another")
    assert refused is not None and refused.status == 429
    assert token not in repr(auth.limiter.__dict__)
    ctx.db.dispose()


def _login(c: TestClient, email: str, password: str) -> int:
    return c.post("/api/auth/login", json={"email": email, "password": password}).status_code


def test_wrong_passwords_lock_that_email_only_from_that_address(
    limiter_settings: Settings, world: World
) -> None:
    s2 = limiter_settings.model_copy(update={"login_attempts_per_window": 3})
    ctx = AppContext.build(s2)
    app = create_app(s2, ctx)
    world.org("acme")
    world.user("victim@example.com", "acme", "member")
    world.user("neighbour@example.com", "acme", "member")
    with (
        TestClient(app, client=("203.0.113.66", 1)) as attacker,
        TestClient(app, client=("198.51.100.7", 1)) as victim,
    ):
        _bus_ready(ctx)
        assert [_login(attacker, "victim@example.com", "wrong-guess!") for _ in range(4)] == [
            401,
            401,
            401,
            429,
        ]
        # From the attacker's address this email waits for the window (there is no CAPTCHA to tell
        # the owner from the attacker there) ...
        assert _login(attacker, "victim@example.com", PASSWORD) == 429
        # ... but the person logs in from anywhere else, and others log in from that address.
        assert _login(victim, "victim@example.com", PASSWORD) == 200
        assert _login(victim, "Victim@Example.com ", "wrong-guess!") == 401
        assert _login(attacker, "neighbour@example.com", PASSWORD) == 200
    _used_redis(s2, "login:ip-email:")
    ctx.db.dispose()


def test_one_address_spraying_many_emails_is_throttled(limiter_settings: Settings, world: World) -> None:
    s2 = limiter_settings.model_copy(update={"login_attempts_per_window": 3, "login_failures_per_address": 4})
    ctx = AppContext.build(s2)
    app = create_app(s2, ctx)
    world.org("acme")
    world.user("a@example.com", "acme", "member")
    with (
        TestClient(app, client=("203.0.113.66", 1)) as sprayer,
        TestClient(app, client=("198.51.100.7", 1)) as ok,
    ):
        _bus_ready(ctx)
        codes = [_login(sprayer, f"u{i}@example.com", "wrong-guess!") for i in range(5)]
        assert codes == [401, 401, 401, 401, 429]
        assert _login(ok, "a@example.com", PASSWORD) == 200
    _used_redis(s2, "login:ip:")
    ctx.db.dispose()


def test_org_api_key_never_sees_another_org(api: TestClient, world: World) -> None:
    world.org("a-org")
    world.org("b-org")
    key_a = world.api_key("a-org", ["timeseries"])
    me = api.get("/api/tokens/self", headers={"x-api-key": key_a}).json()
    assert [o["slug"] for o in me["organisations"]] == ["a-org"]
    assert {
        g["organisation_slug"] for g in api.get("/api/managements", headers={"x-api-key": key_a}).json()
    } == {"a-org"}
    assert api.get("/probe/timeseries", headers={"x-api-key": key_a}).json()["orgs"] == ["a-org"]


def test_tokens_cannot_manage_tokens(api: TestClient, world: World) -> None:
    world.org("acme")
    world.user("a@example.com", "acme", "owner")
    pat = world.pat("a@example.com", ["timeseries"])
    for method, path in [
        ("GET", "/api/tokens"),
        ("POST", "/api/tokens"),
        ("GET", "/api/orgs/acme/api-keys"),
        ("POST", "/api/orgs/acme/api-keys"),
    ]:
        r = api.request(method, path, headers=bearer(pat), json={"name": "x", "scopes": ["timeseries"]})
        assert r.status_code == 403, (method, path)
        assert "session" in r.json()["message"]


def test_oversized_body_is_refused(settings: Settings, world: World) -> None:
    s2 = settings.model_copy(update={"max_body_bytes": 2048})
    app = create_app(s2, AppContext.build(s2))
    with TestClient(app) as c:
        r = c.post(
            "/api/auth/login", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        assert "2048" in r.json()["message"]

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/api/auth/login", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
