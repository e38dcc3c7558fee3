"""The heart: a person logs in, mints a PAT, uses it, rotates it, revokes it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from sensorhub.auth.token_format import scanner_regex
from sensorhub.context import AppContext
from tests.builders import World, bearer, login


def test_login_create_use_rotate_revoke(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("ana@example.com", "acme", "member")
    login(client, "ana@example.com")

    r = client.post("/api/tokens", json={"name": "notebook", "scopes": ["timeseries", "entities"]})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert re.fullmatch(scanner_regex("shub"), token)
    assert created["scopes"] == ["entities", "timeseries"]
    assert created["status"] == "active"
    assert created["last_used_at"] is None

    # The secret is never shown again.
    listed = client.get("/api/tokens").json()
    assert [t["name"] for t in listed] == ["notebook"]
    assert "token" not in listed[0]
    assert token not in client.get("/api/tokens").text

    # Use it (a fresh client: no cookies).
    api = TestClient(client.app)
    me = api.get("/api/tokens/self", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json()["effective_scopes"] == ["entities", "timeseries"]
    assert me.json()["expires_in_seconds"] > 364 * 86400

    t = client.get(f"/api/tokens/{created['id']}").json()
    assert t["last_used_at"] is not None
    assert t["last_used_ip"] == "testclient"

    # Rotate: old secret → 401, new → 200, same name and scopes.
    r = client.post(f"/api/tokens/{created['id']}/rotate")
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["name"] == "notebook" and rotated["scopes"] == ["entities", "timeseries"]
    assert rotated["token"] != token
    assert api.get("/api/tokens/self", headers=bearer(token)).status_code == 401
    assert api.get("/api/tokens/self", headers=bearer(rotated["token"])).status_code == 200

    # Revoke: refused on the very next request; revoking again is harmless.
    r = client.delete(f"/api/tokens/{rotated['id']}")
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert api.get("/api/tokens/self", headers=bearer(rotated["token"])).status_code == 401
    assert client.delete(f"/api/tokens/{rotated['id']}").json()["status"] == "revoked"

    statuses = {t["id"]: t["status"] for t in client.get("/api/tokens").json()}
    assert statuses == {created["id"]: "revoked", rotated["id"]: "revoked"}


def test_concurrent_writers_do_not_fail(ctx, world: World) -> None:  # type: ignore[no-untyped-def]
    """Write sessions serialise cleanly on SQLite (no 'database is locked' under contention)."""
    import threading

    from sensorhub.accounts import service as accounts

    world.org("acme")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(5):
                with ctx.db.write_session() as s:
                    org = accounts.get_org(s, "acme")
                    accounts.create_workspace(s, org, f"w{i}-{j}")
                    s.commit()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ctx.db.session() as s:
        assert len(accounts.list_workspaces(s, accounts.get_org(s, "acme"))) == 1 + 30


FAR = "9999-12-31T23:59:59Z"
MAX_DAYS = 5 * 365  # SENSORHUB_MAX_TOKEN_LIFETIME_DAYS default


def _days_left(expires_at: str) -> float:
    return (datetime.fromisoformat(expires_at) - datetime.now(UTC)).total_seconds() / 86400


def test_one_maximum_lifetime_whatever_way_expiry_is_stated(client: TestClient, world: World) -> None:
    """No far-future date or huge day count gets around "no non-expiring tokens": PATs, API keys and
    API-user tokens all obey the server's maximum and the organisation's cap."""
    world.org("acme")
    world.user("boss@example.com", "acme", "owner")
    login(client, "boss@example.com")
    api_user = client.post("/api/orgs/acme/api-users", json={"name": "etl"}).json()["id"]
    routes = ["/api/tokens", "/api/orgs/acme/api-keys", f"/api/orgs/acme/api-users/{api_user}/tokens"]
    soon = (datetime.now(UTC) + timedelta(days=MAX_DAYS - 1)).isoformat()
    too_late = (datetime.now(UTC) + timedelta(days=MAX_DAYS + 2)).isoformat()
    for i, route in enumerate(routes):
        for bad in (
            {"expires_at": FAR},
            {"expires_at": too_late},
            {"expires_in_days": 36500},
            {"expires_in_days": MAX_DAYS + 1},
            {"expires_in_days": 10**30},
            {"never": True},
        ):
            r = client.post(route, json={"name": f"bad{i}", "scopes": ["timeseries"], **bad})
            assert r.status_code == 400, (route, bad, r.text)
            assert "non-expiring" in r.json()["message"] or f"{MAX_DAYS} days" in r.json()["message"], r.text
        r = client.post(
            route, json={"name": f"max{i}", "scopes": ["timeseries"], "expires_in_days": MAX_DAYS}
        )
        assert r.status_code == 201, (route, r.text)
        r = client.post(route, json={"name": f"at{i}", "scopes": ["timeseries"], "expires_at": soon})
        assert r.status_code == 201, (route, r.text)

    # An organisation cap is stricter still, and is named.
    client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": 30, "allow_non_expiring_tokens": False}
    )
    for route in routes:
        r = client.post(route, json={"name": "capped", "scopes": ["timeseries"], "expires_at": FAR})
        assert r.status_code == 400 and "caps token lifetime at 30 days" in r.json()["message"], r.text

    # Where the organisation opted into non-expiring tokens, `never` is the way to say so; a far date
    # is still refused, with that advice.
    client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": None, "allow_non_expiring_tokens": True}
    )
    r = client.post("/api/tokens", json={"name": "far", "scopes": ["timeseries"], "expires_at": FAR})
    assert r.status_code == 400 and "use never" in r.json()["message"]
    r = client.post("/api/tokens", json={"name": "forever", "scopes": ["timeseries"], "never": True})
    assert r.status_code == 201 and r.json()["expires_at"] is None


def test_rotation_works_for_every_token_the_server_accepted(client: TestClient, world: World) -> None:
    """Tokens minted before the maximum existed (9999-12-31, 36500 days) and non-expiring tokens of an
    organisation that no longer allows them rotate: the new secret gets today's maximum."""
    from sensorhub.tokens.models import Credential

    world.org("acme")
    world.user("boss@example.com", "acme", "owner")
    login(client, "boss@example.com")
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    api = TestClient(client.app)
    legacy = {
        "far": datetime(9999, 12, 31, tzinfo=UTC),
        "century": datetime.now(UTC) + timedelta(days=36500),
        "never": None,
        "month": datetime.now(UTC) + timedelta(days=30),
    }
    made = {}
    for name, expires in legacy.items():
        r = client.post("/api/tokens", json={"name": name, "scopes": ["timeseries"]})
        made[name] = r.json()
        with ctx.db.transaction() as s:
            s.get_one(Credential, r.json()["id"]).expires_at = expires
    for name in legacy:
        r = client.post(f"/api/tokens/{made[name]['id']}/rotate")
        assert r.status_code == 200, (name, r.text)
        new = r.json()
        assert api.get("/api/tokens/self", headers=bearer(new["token"])).status_code == 200
        assert api.get("/api/tokens/self", headers=bearer(made[name]["token"])).status_code == 401
        if name == "month":  # the same lifetime it was created with (30 days), counted from now
            assert 29 < _days_left(new["expires_at"]) <= 30.01
        else:
            assert new["expires_at"] is not None, name
            assert MAX_DAYS - 1 < _days_left(new["expires_at"]) <= MAX_DAYS + 0.01, (name, new["expires_at"])

    # A non-expiring token stays non-expiring on rotation while the organisation allows it.
    client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": None, "allow_non_expiring_tokens": True}
    )
    r = client.post("/api/tokens", json={"name": "forever", "scopes": ["timeseries"], "never": True})
    r = client.post(f"/api/tokens/{r.json()['id']}/rotate")
    assert r.status_code == 200 and r.json()["expires_at"] is None

    # An organisation cap applies to rotation too.
    client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": 7, "allow_non_expiring_tokens": False}
    )
    r = client.post(f"/api/tokens/{r.json()['id']}/rotate")
    assert r.status_code == 200 and 6 < _days_left(r.json()["expires_at"]) <= 7.01
