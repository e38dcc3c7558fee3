"""Management API: bad input, policies, API keys, API users, grants, members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.builders import World, bearer, login


def _setup(client: TestClient, world: World, role: str = "member") -> None:
    world.org("acme", ("north", "south"))
    world.user("u@example.com", "acme", role)
    login(client, "u@example.com")


def _count_tokens(client: TestClient) -> int:
    return len(client.get("/api/tokens").json())


def test_bad_token_requests_are_refused_and_change_nothing(client: TestClient, world: World) -> None:
    _setup(client, world)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases = [
        ({"name": "a", "scopes": ["timeseries", "admin"]}, "unknown scope 'admin'"),
        ({"name": "a", "scopes": []}, "at least one scope"),
        ({"name": "   ", "scopes": ["timeseries"]}, "name must not be empty"),
        ({"name": "a", "scopes": ["timeseries"], "expires_at": past}, "past"),
        ({"name": "a", "scopes": ["timeseries"], "expires_at": "2030-01-01T00:00:00"}, "time zone"),
        ({"name": "a", "scopes": ["timeseries"], "expires_in_days": 0}, "at least 1"),
        ({"name": "a", "scopes": ["timeseries"], "never": True}, "non-expiring"),
        ({"name": "a", "scopes": ["timeseries"], "expires_in_days": 5, "never": True}, "only one"),
        ({"name": "a", "scopes": ["timeseries"], "workspaces": ["nowhere"]}, "workspace 'nowhere' not found"),
        ({"name": "a", "scopes": ["timeseries"], "organisations": ["other"]}, "not one you are a member of"),
        ({"name": "a", "scopes": ["timeseries"], "allowed_ips": ["999.1.1.1"]}, "not an IP"),
        (
            {
                "name": "a",
                "scopes": ["timeseries"],
                "time_start": "2026-02-01T00:00:00Z",
                "time_end": "2026-01-01T00:00:00Z",
            },
            "after time_start",
        ),
        ({"name": "a", "scopes": ["timeseries"], "colour": "red"}, "colour"),
        ({"name": "a" * 101, "scopes": ["timeseries"]}, "name"),
    ]
    for body, expected in cases:
        r = client.post("/api/tokens", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert expected in r.json()["message"], (body, r.json()["message"])
    assert _count_tokens(client) == 0


def test_duplicate_name_is_refused_until_the_first_is_revoked(client: TestClient, world: World) -> None:
    _setup(client, world)
    first = client.post("/api/tokens", json={"name": "ci", "scopes": ["timeseries"]}).json()
    r = client.post("/api/tokens", json={"name": "ci", "scopes": ["entities"]})
    assert r.status_code == 409 and "already have an active token named 'ci'" in r.json()["message"]
    assert _count_tokens(client) == 1
    client.delete(f"/api/tokens/{first['id']}")
    assert client.post("/api/tokens", json={"name": "ci", "scopes": ["entities"]}).status_code == 201


def test_viewer_cannot_mint_ingest(client: TestClient, world: World) -> None:
    _setup(client, world, "viewer")
    r = client.post("/api/tokens", json={"name": "w", "scopes": ["ingest"]})
    assert r.status_code == 403 and "'ingest'" in r.json()["message"]


def test_csrf_is_required_for_unsafe_requests(client: TestClient, world: World) -> None:
    _setup(client, world)
    del client.headers["X-CSRF-Token"]
    r = client.post("/api/tokens", json={"name": "a", "scopes": ["timeseries"]})
    assert r.status_code == 403 and "CSRF" in r.json()["message"]
    client.headers["X-CSRF-Token"] = "wrong"
    assert client.post("/api/tokens", json={"name": "a", "scopes": ["timeseries"]}).status_code == 403


def test_login_failures(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("u@example.com", "acme")
    r = client.post("/api/auth/login", json={"email": "u@example.com", "password": "nope-nope"})
    assert r.status_code == 401 and r.json()["message"] == "Wrong email or password"
    r = client.post("/api/auth/login", json={"email": "ghost@example.com", "password": "nope-nope"})
    assert r.status_code == 401 and r.json()["message"] == "Wrong email or password"
    assert client.get("/api/tokens").status_code == 401


def test_login_is_rate_limited(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("u@example.com", "acme")
    codes = [
        client.post(
            "/api/auth/login", json={"email": "u@example.com", "password": "bad-password"}
        ).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429


def test_logout_ends_the_session(client: TestClient, world: World) -> None:
    _setup(client, world)
    assert client.get("/api/auth/me").status_code == 200
    assert client.post("/api/auth/logout").status_code == 204
    assert client.get("/api/auth/me").status_code == 401


def test_policy_caps_lifetime_and_controls_never(client: TestClient, world: World, make_client) -> None:  # type: ignore[no-untyped-def]
    world.org("acme")
    world.user("boss@example.com", "acme", "owner")
    world.user("u@example.com", "acme", "member")
    login(client, "boss@example.com")
    r = client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": 30, "allow_non_expiring_tokens": False}
    )
    assert r.status_code == 200 and r.json()["policy"]["max_token_lifetime_days"] == 30

    member = make_client()
    login(member, "u@example.com")
    r = member.post("/api/tokens", json={"name": "long", "scopes": ["timeseries"], "expires_in_days": 90})
    assert r.status_code == 400 and "caps token lifetime at 30 days" in r.json()["message"]
    r = member.post("/api/tokens", json={"name": "default", "scopes": ["timeseries"]})
    assert r.status_code == 201
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

    client.put(
        "/api/orgs/acme/policy", json={"max_token_lifetime_days": None, "allow_non_expiring_tokens": True}
    )
    r = member.post("/api/tokens", json={"name": "forever", "scopes": ["timeseries"], "never": True})
    assert r.status_code == 201 and r.json()["expires_at"] is None
    # Members cannot change the policy.
    assert member.put("/api/orgs/acme/policy", json={"max_token_lifetime_days": 1}).status_code == 403


def test_api_keys_are_for_owners_and_admins_only(client: TestClient, world: World, make_client) -> None:  # type: ignore[no-untyped-def]
    world.org("acme", ("north", "south"))
    world.user("admin@example.com", "acme", "admin")
    world.user("u@example.com", "acme", "member")
    member = make_client()
    login(member, "u@example.com")
    assert (
        member.post("/api/orgs/acme/api-keys", json={"name": "k", "scopes": ["timeseries"]}).status_code
        == 403
    )
    assert member.get("/api/orgs/acme/api-keys").status_code == 403

    login(client, "admin@example.com")
    r = client.post(
        "/api/orgs/acme/api-keys",
        json={"name": "grafana", "scopes": ["timeseries", "entities"], "workspaces": ["north"]},
    )
    assert r.status_code == 201, r.text
    key = r.json()["token"]
    assert key.startswith("shub_key_")
    me = TestClient(client.app).get("/api/tokens/self", headers={"x-api-key": key}).json()
    assert me["owner"]["type"] == "organisation"
    assert {g["department_slug"] for g in me["grants"]} == {"north"}
    assert [k["name"] for k in client.get("/api/orgs/acme/api-keys").json()] == ["grafana"]

    # An outsider's organisation is invisible.
    assert client.get("/api/orgs/other/api-keys").status_code == 404
    # Revoke.
    assert client.delete(f"/api/orgs/acme/api-keys/{r.json()['id']}").json()["status"] == "revoked"
    assert TestClient(client.app).get("/api/tokens/self", headers={"x-api-key": key}).status_code == 401


def test_api_users_and_their_tokens(client: TestClient, world: World) -> None:
    world.org("acme", ("north", "south"))
    world.user("boss@example.com", "acme", "owner")
    login(client, "boss@example.com")
    r = client.post(
        "/api/orgs/acme/api-users", json={"name": "etl", "role": "member", "workspaces": ["south"]}
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    r = client.post(
        f"/api/orgs/acme/api-users/{uid}/tokens", json={"name": "nightly", "scopes": ["timeseries", "ingest"]}
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    api = TestClient(client.app)
    me = api.get("/api/tokens/self", headers=bearer(token)).json()
    assert me["owner"]["type"] == "api_user"
    mg = api.get("/api/managements", headers=bearer(token)).json()
    assert [(m["organisation"], m["department"], m["entity"]) for m in mg] == [("Acme", "South", None)]

    # Disabling the API user cuts its tokens off at once.
    assert client.patch(f"/api/orgs/acme/api-users/{uid}", json={"disabled": True}).status_code == 200
    assert api.get("/api/tokens/self", headers=bearer(token)).status_code == 401
    # API users cannot log in.
    assert client.post("/api/orgs/acme/api-users", json={"name": "etl"}).status_code == 409


def test_grants_shape_reads_and_managements(client: TestClient, world: World) -> None:
    world.org("acme", ("north", "south"))
    world.user("boss@example.com", "acme", "owner")
    world.user("r@example.com", "acme", "member", grant_org=False)
    login(client, "boss@example.com")
    token = world.pat("r@example.com", ["timeseries"])
    api = TestClient(client.app)
    assert api.get("/api/managements", headers=bearer(token)).json() == []

    r = client.post(
        "/api/orgs/acme/grants",
        json={
            "user": "r@example.com",
            "workspace": "north",
            "entity": "urn:ngsi-ld:Device:1",
            "time_start": "2026-01-01T00:00:00Z",
            "time_end": "2026-02-01T00:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    mg = api.get("/api/managements", headers=bearer(token)).json()
    assert len(mg) == 1
    assert mg[0]["organisation"] == "Acme" and mg[0]["department"] == "North"
    assert mg[0]["entity"] == "urn:ngsi-ld:Device:1"
    assert mg[0]["time_start"] == "2026-01-01T00:00:00Z" and mg[0]["time_end"] == "2026-02-01T00:00:00Z"
    assert set(mg[0]) >= {"id", "organisation", "department", "entity", "time_start", "time_end"}

    r = client.post(
        "/api/orgs/acme/grants",
        json={
            "user": "r@example.com",
            "time_start": "2026-02-01T00:00:00Z",
            "time_end": "2026-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 400
    client.delete(f"/api/orgs/acme/grants/{client.get('/api/orgs/acme/grants').json()[0]['id']}")
    assert api.get("/api/managements", headers=bearer(token)).json() == []


def test_members_admin(client: TestClient, world: World, make_client) -> None:  # type: ignore[no-untyped-def]
    world.org("acme")
    world.user("boss@example.com", "acme", "owner")
    login(client, "boss@example.com")
    world.user("new@example.com")
    r = client.post("/api/orgs/acme/members", json={"email": "new@example.com", "role": "viewer"})
    assert r.status_code == 202 and r.json()["status"] == "pending"
    newcomer = make_client()
    login(newcomer, "new@example.com")
    assert newcomer.post(f"/api/invitations/{r.json()['id']}/accept").status_code == 200
    assert {m["email"]: m["role"] for m in client.get("/api/orgs/acme/members").json()} == {
        "boss@example.com": "owner",
        "new@example.com": "viewer",
    }
    r = client.post("/api/orgs/acme/members", json={"email": "ghost@example.com", "password": "pass-word-1"})
    assert r.status_code == 400 and "'password' is not accepted" in r.json()["message"]
    # The last owner cannot leave.
    r = client.delete("/api/orgs/acme/members/boss@example.com")
    assert r.status_code == 409
    # An admin cannot make owners.
    world.user("adm@example.com", "acme", "admin")
    adm = make_client()
    login(adm, "adm@example.com")
    assert adm.patch("/api/orgs/acme/members/new@example.com", json={"role": "owner"}).status_code == 403
    assert adm.patch("/api/orgs/acme/members/new@example.com", json={"role": "superuser"}).status_code == 400


def test_audit_events_record_the_token_lifecycle(client: TestClient, world: World) -> None:
    _setup(client, world, "owner")
    t = client.post("/api/tokens", json={"name": "a", "scopes": ["timeseries"]}).json()
    TestClient(client.app).get("/api/tokens/self", headers=bearer(t["token"]))
    client.post(f"/api/tokens/{t['id']}/rotate")
    client.delete(f"/api/tokens/{t['id']}")
    actions = [e["action"] for e in client.get("/api/orgs/acme/audit-events").json()]
    assert {"token.create", "token.used", "token.rotate"} <= set(actions)
    assert t["token"] not in client.get("/api/orgs/acme/audit-events").text
