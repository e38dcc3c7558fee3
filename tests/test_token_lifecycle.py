"""The heart: a person logs in, mints a PAT, uses it, rotates it, revokes it."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from sensorhub.auth.token_format import scanner_regex
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
