"""Rotation with an overlap, and the expiry headers a credential's last days carry (and the SDK's warning)."""

from __future__ import annotations

import warnings
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from sensorhub.db import Clock
from tests.builders import World, bearer, login


def _pat(client: TestClient, name: str = "deploy", **extra: object) -> dict[str, object]:
    r = client.post("/api/tokens", json={"name": name, "scopes": ["entities"], **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_rotation_with_grace_keeps_both_secrets_until_the_grace_ends(
    client: TestClient, world: World, clock: Clock
) -> None:
    world.org("acme")
    world.user("ana@example.com", "acme", "member")
    login(client, "ana@example.com")
    old = _pat(client)
    api = TestClient(client.app)

    r = client.post(f"/api/tokens/{old['id']}/rotate", json={"grace_days": 1})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["name"] == "deploy" and new["rotated_from"] == old["id"]

    # Both secrets work; the old one says it is in its grace, the new one until when the old one works.
    me_old = api.get("/api/tokens/self", headers=bearer(str(old["token"])))
    me_new = api.get("/api/tokens/self", headers=bearer(new["token"]))
    assert me_old.status_code == 200 and me_new.status_code == 200
    assert me_old.json()["rotation"]["superseded"] is True
    assert me_old.json()["expires_in_seconds"] <= 86400
    until = me_new.json()["rotation"]["previous_secret_valid_until"]
    assert until == me_old.json()["expires_at"]
    # The old secret is in its last 7 days: its answers say so; the new one's do not.
    assert me_old.headers["x-sensorhub-token-expires"] == me_old.json()["expires_at"]
    assert me_old.headers["sunset"].endswith(" GMT")
    assert "x-sensorhub-token-expires" not in me_new.headers

    listed = {t["id"]: t for t in client.get("/api/tokens").json()}
    assert listed[str(old["id"])]["status"] == "grace"
    assert listed[str(old["id"])]["rotated_to"] == new["id"]
    assert listed[new["id"]]["status"] == "active"
    # The old secret cannot be rotated again.
    r = client.post(f"/api/tokens/{old['id']}/rotate", json={"grace_days": 1})
    assert r.status_code == 409 and "already rotated" in r.json()["message"]

    clock.advance(timedelta(days=1, minutes=1))
    assert api.get("/api/tokens/self", headers=bearer(str(old["token"]))).status_code == 401
    assert api.get("/api/tokens/self", headers=bearer(new["token"])).status_code == 200
    login(client, "ana@example.com")  # the session of a day ago has ended
    listed = {t["id"]: t for t in client.get("/api/tokens").json()}
    assert listed[str(old["id"])]["status"] == "rotated"


def test_revoking_the_token_ends_the_grace_at_once(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("ana@example.com", "acme", "member")
    login(client, "ana@example.com")
    old = _pat(client)
    api = TestClient(client.app)
    new = client.post(f"/api/tokens/{old['id']}/rotate", json={"grace_days": 7}).json()
    assert api.get("/api/tokens/self", headers=bearer(str(old["token"]))).status_code == 200

    assert client.delete(f"/api/tokens/{new['id']}").status_code == 200
    assert api.get("/api/tokens/self", headers=bearer(str(old["token"]))).status_code == 401
    assert api.get("/api/tokens/self", headers=bearer(new["token"])).status_code == 401
    statuses = {t["id"]: t["status"] for t in client.get("/api/tokens").json()}
    assert statuses == {old["id"]: "revoked", new["id"]: "revoked"}


def test_grace_beyond_the_policy_is_refused_and_changes_nothing(client: TestClient, world: World) -> None:
    world.org("acme")
    world.user("olga@example.com", "acme", "owner")
    login(client, "olga@example.com")
    r = client.put("/api/orgs/acme/policy", json={"max_rotation_grace_days": 2})
    assert r.status_code == 200 and r.json()["policy"]["max_rotation_grace_days"] == 2
    old = _pat(client)
    api = TestClient(client.app)

    for days, words in ((3, "at most 2 day"), (8, "at most 2 day"), (-1, "grace_days must be 0")):
        r = client.post(f"/api/tokens/{old['id']}/rotate", json={"grace_days": days})
        assert r.status_code == 400, r.text
        assert words in r.json()["message"]
    r = client.post(f"/api/tokens/{old['id']}/rotate", json={"grace_days": 1, "overlap": 1})
    assert r.status_code in (400, 422) and "overlap" in r.text
    # Nothing happened: the one token is active and its secret works.
    assert [t["status"] for t in client.get("/api/tokens").json()] == ["active"]
    assert api.get("/api/tokens/self", headers=bearer(str(old["token"]))).status_code == 200
    assert client.put("/api/orgs/acme/policy", json={"max_rotation_grace_days": 8}).status_code == 400

    # An API key follows its organisation's policy too; no body still means "stop at once".
    key = client.post("/api/orgs/acme/api-keys", json={"name": "k", "scopes": ["entities"]}).json()
    r = client.post(f"/api/orgs/acme/api-keys/{key['id']}/rotate", json={"grace_days": 3})
    assert r.status_code == 400
    r = client.post(f"/api/orgs/acme/api-keys/{key['id']}/rotate", json={"grace_days": 2})
    assert r.status_code == 200
    assert api.get("/api/tokens/self", headers={"x-api-key": key["token"]}).status_code == 200
    r = client.post(f"/api/orgs/acme/api-keys/{r.json()['id']}/rotate")
    assert r.status_code == 200
    assert api.get("/api/tokens/self", headers={"x-api-key": key["token"]}).status_code == 200


def test_last_seven_days_carry_expiry_headers_and_the_sdk_warns(
    client: TestClient, world: World, clock: Clock
) -> None:
    import sensorhub_client as sc

    world.org("acme")
    world.user("ana@example.com", "acme", "member")
    world.entity("acme", "main", "urn:ngsi-ld:Device:d1")
    login(client, "ana@example.com")
    tok = _pat(client, expires_in_days=10)
    api = TestClient(client.app)
    assert "sunset" not in api.get("/api/tokens/self", headers=bearer(str(tok["token"]))).headers

    clock.advance(timedelta(days=3, hours=1))
    r = api.get("/ngsi-ld/v1/entities?type=Device", headers=bearer(str(tok["token"])))
    assert r.status_code == 200
    assert r.headers["x-sensorhub-token-expires"] == str(tok["expires_at"]).replace("+00:00", "Z")
    # Errors to the credential say it too (a 404 is still an answer to this credential).
    r = api.get("/ngsi-ld/v1/entities/urn:nope", headers=bearer(str(tok["token"])))
    assert r.status_code == 404 and "x-sensorhub-token-expires" in r.headers

    transport = httpx.MockTransport(lambda req: _asgi(client, req))
    client_ = sc.Client("http://testserver", token=str(tok["token"]), transport=transport)
    with client_ as c, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(c.entities(type="Device"))
        list(c.entities(type="Device"))
    expiring = [w for w in caught if issubclass(w.category, sc.TokenExpiringWarning)]
    assert len(expiring) == 1  # once per client, not per request
    assert "rotate it" in str(expiring[0].message)


def _asgi(client: TestClient, req: httpx.Request) -> httpx.Response:
    r = client.request(req.method, str(req.url), headers=dict(req.headers), content=req.content)
    return httpx.Response(r.status_code, headers=r.headers, content=r.content)


@pytest.mark.parametrize("path", ["/integrations"])
def test_rotation_grace_in_the_web_ui(client: TestClient, world: World, path: str) -> None:
    from tests.web.helpers import csrf_of, revealed, web_login

    world.org("acme")
    world.user("ana@example.com", "acme", "member")
    csrf = web_login(client, "ana@example.com")
    r = client.post("/integrations/tokens", data={"name": "job", "scopes": "entities", "csrf_token": csrf})
    assert r.status_code == 201
    tid = client.get("/api/tokens").json()[0]["id"]
    r = client.post(f"/integrations/tokens/{tid}/rotate", data={"grace_days": "3", "csrf_token": csrf})
    assert r.status_code == 200 and revealed(r.text)
    assert "The old secret keeps working until" in r.text
    page = client.get(path).text
    assert "badge-grace" in page and "old secret works until" in page
    csrf = csrf_of(page)
    r = client.post(f"/integrations/tokens/{tid}/rotate", data={"grace_days": "3", "csrf_token": csrf})
    assert "already rotated" in r.text
